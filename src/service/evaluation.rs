//! The evaluation logic shared by every evaluation API version: request context, selector,
//! lookup, resolution, metadata and error mapping. The per-version adapters only copy an
//! [`Outcome`] into their own response messages.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::limits::StreamLimit;
use super::metrics::{EvaluationResult, Metrics};
use super::wire::JsonStruct;
use crate::config::Settings;
use crate::eval::{
    resolve, Context, ErrorCode, EvalOptions, Reason, ResolveError, ResolvedValue, ValueType,
};
use crate::flags::{Flag, FlagState};
use crate::store::{Selector, Store};

/// The request header carrying the selector.
pub const SELECTOR_HEADER: &str = "flagd-selector";

/// Which evaluation API a request came in on; the versions differ only in edge cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `flagd.evaluation.v1`: a code default is FLAG_NOT_FOUND, DISABLED has a zero value.
    V1,
    /// `flagd.evaluation.v2`: code default and DISABLED leave value and variant unset.
    V2,
    /// `schema.v1` (legacy): no header context, no stream deadline, code default is `FALLBACK`.
    SchemaV1,
}

impl Api {
    /// Whether `-H` header mappings apply (flagd skips them on schema.v1).
    fn uses_header_context(self) -> bool {
        self != Api::SchemaV1
    }

    /// Whether `--stream-deadline` applies to EventStream (flagd skips it on schema.v1).
    pub fn uses_stream_deadline(self) -> bool {
        self != Api::SchemaV1
    }
}

/// A single-flag evaluation as every API version sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    /// The value; `None` for DISABLED and for a code default.
    pub value: Option<T>,
    /// The variant; `None` for DISABLED and for a code default.
    pub variant: Option<String>,
    /// The reason string.
    pub reason: &'static str,
    /// Selector reflection overlaid by the flag's metadata.
    pub metadata: JsonStruct,
}

/// A requested value type (one per single-flag RPC) and how it leaves the evaluator.
pub trait Kind {
    /// The Rust type of the response's `value` field.
    type Value: Default;
    /// What [`resolve`] is asked for.
    const TYPE: ValueType;
    /// Converts a resolved value of [`Self::TYPE`]; `None` if it is of another type.
    fn convert(value: ResolvedValue<'_>) -> Option<Self::Value>;
}

/// `ResolveBoolean`.
#[derive(Debug)]
pub struct BoolKind;
/// `ResolveString`.
#[derive(Debug)]
pub struct StringKind;
/// `ResolveInt`.
#[derive(Debug)]
pub struct IntKind;
/// `ResolveFloat`.
#[derive(Debug)]
pub struct FloatKind;
/// `ResolveObject`.
#[derive(Debug)]
pub struct ObjectKind;

impl Kind for BoolKind {
    type Value = bool;
    const TYPE: ValueType = ValueType::Boolean;
    fn convert(value: ResolvedValue<'_>) -> Option<bool> {
        match value {
            ResolvedValue::Bool(b) => Some(b),
            ResolvedValue::Any(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}

impl Kind for StringKind {
    type Value = String;
    const TYPE: ValueType = ValueType::String;
    fn convert(value: ResolvedValue<'_>) -> Option<String> {
        match value {
            ResolvedValue::String(s) => Some(s.to_owned()),
            ResolvedValue::Any(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Kind for IntKind {
    type Value = i64;
    const TYPE: ValueType = ValueType::Integer;
    fn convert(value: ResolvedValue<'_>) -> Option<i64> {
        match value {
            ResolvedValue::Int(i) => Some(i),
            // Truncation toward zero, saturating, as Go's int64(float64) on sane values.
            ResolvedValue::Float(f) => Some(f as i64),
            ResolvedValue::Any(Value::Number(n)) => n.as_i64().or(n.as_f64().map(|f| f as i64)),
            _ => None,
        }
    }
}

impl Kind for FloatKind {
    type Value = f64;
    const TYPE: ValueType = ValueType::Float;
    fn convert(value: ResolvedValue<'_>) -> Option<f64> {
        match value {
            ResolvedValue::Float(f) => Some(f),
            ResolvedValue::Int(i) => Some(i as f64),
            ResolvedValue::Any(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }
}

impl Kind for ObjectKind {
    type Value = JsonStruct;
    const TYPE: ValueType = ValueType::Object;
    fn convert(value: ResolvedValue<'_>) -> Option<JsonStruct> {
        match value {
            ResolvedValue::Object(map) | ResolvedValue::Any(Value::Object(map)) => {
                Some(JsonStruct(map.clone()))
            }
            _ => None,
        }
    }
}

/// Any JSON value except `null` (OFREP), as flagd's `ResolveAsAnyValue`.
#[derive(Debug)]
pub struct AnyKind;

impl Kind for AnyKind {
    type Value = Value;
    const TYPE: ValueType = ValueType::Any;
    fn convert(value: ResolvedValue<'_>) -> Option<Value> {
        Some(match value {
            ResolvedValue::Any(v) => v.clone(),
            ResolvedValue::Bool(b) => Value::Bool(b),
            ResolvedValue::String(s) => Value::String(s.to_owned()),
            ResolvedValue::Int(i) => Value::from(i),
            ResolvedValue::Float(f) => serde_json::Number::from_f64(f).map(Value::Number)?,
            ResolvedValue::Object(map) => Value::Object(map.clone()),
        })
    }
}

/// A value inside a ResolveAll entry (the `AnyFlag.value` oneof).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    /// `bool_value`.
    Bool(bool),
    /// `string_value`.
    String(String),
    /// `double_value` (integers too).
    Double(f64),
    /// `object_value`.
    Object(JsonStruct),
}

/// One entry of a ResolveAll response.
#[derive(Debug, Clone, PartialEq)]
pub struct AnyOutcome {
    /// The flag key (the response map key).
    pub key: String,
    /// `STATIC`, `TARGETING_MATCH`, `DEFAULT`, `DISABLED` or `ERROR`.
    pub reason: &'static str,
    /// The variant (`""` when none).
    pub variant: String,
    /// The value, zero for DISABLED and errors.
    pub value: AnyValue,
    /// Selector reflection overlaid by the flag's metadata.
    pub metadata: JsonStruct,
}

/// A ResolveAll evaluation: entries in (flagSetId, key) order, later duplicates win.
#[derive(Debug, Clone, PartialEq)]
pub struct AllOutcome {
    /// The evaluated flags.
    pub flags: Vec<AnyOutcome>,
    /// Selector reflection only.
    pub metadata: JsonStruct,
}

/// How EventStream behaves (from [`Settings`]).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Silence after which `keep_alive` is sent (zero disables keep-alives).
    pub keep_alive: Duration,
    /// Server-side stream deadline (v1 and v2 only).
    pub deadline: Option<Duration>,
}

/// The shared evaluation core behind every API version.
#[derive(Debug)]
pub struct Evaluator {
    pub(super) store: Arc<Store>,
    static_context: Vec<(String, Value)>,
    header_context: Vec<(String, String)>,
    options: EvalOptions,
    pub(super) streams: StreamSettings,
    /// Flips to `true` once when the daemon starts draining.
    pub(super) draining: watch::Receiver<bool>,
    /// Where evaluation outcomes and open streams are counted.
    pub(super) metrics: Arc<Metrics>,
    /// The daemon-wide cap on open streams.
    pub(super) stream_limit: StreamLimit,
}

impl Evaluator {
    /// An evaluator over `store`, configured from `settings`; `draining` ends event streams.
    pub fn new(settings: &Settings, store: Arc<Store>, draining: watch::Receiver<bool>) -> Self {
        Evaluator {
            store,
            static_context: settings
                .static_context
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            header_context: settings
                .header_context
                .iter()
                .map(|(header, key)| (header.to_ascii_lowercase(), key.clone()))
                .collect(),
            options: EvalOptions {
                fractional: settings.fractional,
            },
            streams: StreamSettings {
                keep_alive: settings.keep_alive_interval,
                deadline: settings.stream_deadline,
            },
            draining,
            metrics: Arc::new(Metrics::new(settings.metrics_key_limit)),
            stream_limit: StreamLimit::new(settings.max_open_streams),
        }
    }

    /// This evaluator counting its event streams under `limit` (shared with the sync port).
    pub fn with_stream_limit(mut self, limit: StreamLimit) -> Self {
        self.stream_limit = limit;
        self
    }

    /// This evaluator recording into `metrics` (shared with the management port).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Evaluates one flag as type `K` (ResolveBoolean, ResolveString, ...).
    pub fn evaluate<K: Kind>(
        &self,
        api: Api,
        headers: &MetadataMap,
        flag_key: &str,
        context: Option<JsonStruct>,
    ) -> Result<Outcome<K::Value>, Status> {
        // A request with a bad selector is rejected, not evaluated: it is not counted.
        let selector = selector(headers)?;
        let result = self.evaluate_selected::<K>(api, headers, &selector, flag_key, context);
        self.record(flag_key, &result);
        result
    }

    /// Counts one single-flag outcome in the evaluation metrics.
    fn record<T>(&self, flag_key: &str, result: &Result<Outcome<T>, Status>) {
        self.metrics.evaluation(
            flag_key,
            match result {
                Ok(outcome) => EvaluationResult::Success {
                    variant: outcome.variant.as_deref().unwrap_or(""),
                    reason: outcome.reason,
                },
                Err(status) => EvaluationResult::Failure {
                    code: error_code(status),
                },
            },
        );
    }

    fn evaluate_selected<K: Kind>(
        &self,
        api: Api,
        headers: &MetadataMap,
        selector: &Selector,
        flag_key: &str,
        context: Option<JsonStruct>,
    ) -> Result<Outcome<K::Value>, Status> {
        let context = self.context(api, headers, context);
        let snapshot = self.store.snapshot();
        let stored = snapshot
            .get(flag_key, selector)
            .ok_or_else(flag_not_found)?;
        self.outcome::<K>(api, selector, &stored.flag, &context, now())
    }

    /// Evaluates every flag visible under the request's selector as type `K`, in
    /// (flagSetId, key) order, handing each flag and its outcome to `each` (OFREP bulk);
    /// returns the selector reflection.
    pub fn evaluate_each<K: Kind>(
        &self,
        api: Api,
        headers: &MetadataMap,
        context: Option<JsonStruct>,
        mut each: impl FnMut(&Flag, Result<Outcome<K::Value>, Status>),
    ) -> Result<JsonStruct, Status> {
        let selector = selector(headers)?;
        let context = self.context(api, headers, context);
        let snapshot = self.store.snapshot();
        let now = now();
        for stored in snapshot.flags(&selector) {
            let result = self.outcome::<K>(api, &selector, &stored.flag, &context, now);
            self.record(&stored.flag.key, &result);
            each(&stored.flag, result);
        }
        Ok(JsonStruct(selector_metadata(&selector)))
    }

    /// One found flag evaluated as type `K`: the part of a single-flag RPC after the lookup.
    fn outcome<K: Kind>(
        &self,
        api: Api,
        selector: &Selector,
        flag: &Flag,
        context: &Context,
        now: i64,
    ) -> Result<Outcome<K::Value>, Status> {
        let resolution =
            resolve(flag, context, K::TYPE, &self.options, now).map_err(|e| status(&e))?;
        let metadata = metadata(selector, flag);
        match resolution.value {
            Some(value) => Ok(Outcome {
                value: Some(K::convert(value).ok_or_else(type_mismatch)?),
                variant: resolution.variant.map(str::to_owned),
                reason: resolution.reason.as_str(),
                metadata,
            }),
            None if resolution.reason == Reason::Disabled => Ok(Outcome {
                value: None,
                variant: None,
                reason: Reason::Disabled.as_str(),
                metadata,
            }),
            // No default variant and no targeting match: the caller's default applies.
            None => match api {
                Api::V1 => Err(flag_not_found()),
                Api::V2 => Ok(Outcome {
                    value: None,
                    variant: None,
                    reason: Reason::Default.as_str(),
                    metadata,
                }),
                // flagd's internal sentinel leaks through schema.v1 (spec 1.4).
                Api::SchemaV1 => Ok(Outcome {
                    value: None,
                    variant: None,
                    reason: "FALLBACK",
                    metadata,
                }),
            },
        }
    }

    /// Evaluates every flag visible under the request's selector (spec 1.6).
    pub fn evaluate_all(
        &self,
        api: Api,
        headers: &MetadataMap,
        context: Option<JsonStruct>,
    ) -> Result<AllOutcome, Status> {
        let selector = selector(headers)?;
        let context = self.context(api, headers, context);
        let snapshot = self.store.snapshot();
        let now = now();
        let mut flags = Vec::new();
        for stored in snapshot.flags(&selector) {
            let flag: &Flag = &stored.flag;
            // The type comes from the default variant; flags without one are skipped.
            let Some(zero) = flag
                .default_variant
                .as_ref()
                .and_then(|name| flag.variants.get(name))
                .and_then(zero_of)
            else {
                continue;
            };
            let metadata = metadata(&selector, flag);
            let (reason, variant, value, failure) = if flag.state == FlagState::Disabled {
                (Reason::Disabled.as_str(), String::new(), zero, None)
            } else {
                match resolve(flag, &context, ValueType::Any, &self.options, now) {
                    Ok(resolution) => {
                        let variant = resolution.variant.unwrap_or_default().to_owned();
                        match resolution.value.and_then(|v| same_kind(&zero, v)) {
                            Some(value) => (resolution.reason.as_str(), variant, value, None),
                            // The chosen variant's value is not of the default's type.
                            None => (
                                Reason::Error.as_str(),
                                variant,
                                zero,
                                Some(ErrorCode::TypeMismatch),
                            ),
                        }
                    }
                    Err(e) => (Reason::Error.as_str(), String::new(), zero, Some(e.code)),
                }
            };
            self.metrics.evaluation(
                &flag.key,
                match failure {
                    None => EvaluationResult::Success {
                        variant: &variant,
                        reason,
                    },
                    Some(code) => EvaluationResult::Failure {
                        code: code.as_str(),
                    },
                },
            );
            flags.push(AnyOutcome {
                key: flag.key.clone(),
                reason,
                variant,
                value,
                metadata,
            });
        }
        Ok(AllOutcome {
            flags,
            metadata: JsonStruct(selector_metadata(&selector)),
        })
    }

    /// Request context < static `-X` values < header-mapped `-H` values (spec 5.2).
    fn context(&self, api: Api, headers: &MetadataMap, request: Option<JsonStruct>) -> Context {
        let mut context = request.map(|s| s.0).unwrap_or_default();
        for (key, value) in &self.static_context {
            context.insert(key.clone(), value.clone());
        }
        if api.uses_header_context() {
            for (header, key) in &self.header_context {
                if let Some(value) = headers.get(header.as_str()) {
                    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    context.insert(key.clone(), Value::String(text));
                }
            }
        }
        context
    }
}

/// The zero value of the default variant's type, or `None` if ResolveAll cannot carry it.
fn zero_of(default: &Value) -> Option<AnyValue> {
    match default {
        Value::Bool(_) => Some(AnyValue::Bool(false)),
        Value::String(_) => Some(AnyValue::String(String::new())),
        Value::Number(_) => Some(AnyValue::Double(0.0)),
        Value::Object(_) => Some(AnyValue::Object(JsonStruct::default())),
        Value::Null | Value::Array(_) => None,
    }
}

/// `value` as an [`AnyValue`] if it has the same type as `zero`.
fn same_kind(zero: &AnyValue, value: ResolvedValue<'_>) -> Option<AnyValue> {
    let json = match value {
        ResolvedValue::Any(v) => v,
        ResolvedValue::Bool(b) => {
            return matches!(zero, AnyValue::Bool(_)).then_some(AnyValue::Bool(b))
        }
        ResolvedValue::String(s) => {
            return matches!(zero, AnyValue::String(_)).then(|| AnyValue::String(s.to_owned()))
        }
        ResolvedValue::Int(i) => {
            return matches!(zero, AnyValue::Double(_)).then_some(AnyValue::Double(i as f64))
        }
        ResolvedValue::Float(f) => {
            return matches!(zero, AnyValue::Double(_)).then_some(AnyValue::Double(f))
        }
        ResolvedValue::Object(map) => {
            return matches!(zero, AnyValue::Object(_))
                .then(|| AnyValue::Object(JsonStruct(map.clone())))
        }
    };
    match (zero, json) {
        (AnyValue::Bool(_), Value::Bool(b)) => Some(AnyValue::Bool(*b)),
        (AnyValue::String(_), Value::String(s)) => Some(AnyValue::String(s.clone())),
        (AnyValue::Double(_), Value::Number(n)) => n.as_f64().map(AnyValue::Double),
        (AnyValue::Object(_), Value::Object(map)) => {
            Some(AnyValue::Object(JsonStruct(map.clone())))
        }
        _ => None,
    }
}

/// The selector of a request (`flagd-selector` header; absent means every flag).
pub fn selector(headers: &MetadataMap) -> Result<Selector, Status> {
    let Some(raw) = headers.get(SELECTOR_HEADER) else {
        return Ok(Selector::All);
    };
    let text = raw.to_str().map_err(|_| invalid_selector("<non-ASCII>"))?;
    Selector::parse(text).map_err(|_| invalid_selector(text))
}

/// The error code of an evaluation failure, from the status [`status`] produced.
fn error_code(status: &Status) -> &'static str {
    match status.code() {
        tonic::Code::NotFound => ErrorCode::FlagNotFound.as_str(),
        tonic::Code::InvalidArgument => ErrorCode::TypeMismatch.as_str(),
        tonic::Code::DataLoss => ErrorCode::ParseError.as_str(),
        _ => ErrorCode::General.as_str(),
    }
}

/// INVALID_ARGUMENT naming the selector key, as flagd words it.
pub(super) fn invalid_selector(text: &str) -> Status {
    let key = text.split_once('=').map_or(text, |(key, _)| key);
    Status::invalid_argument(format!(
        "invalid selector key \"{key}\", valid keys: \"flagSetId\", \"source\""
    ))
}

/// `flagSetId` / `source` from the selector, as flagd reflects it into response metadata.
pub(super) fn selector_metadata(selector: &Selector) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some((key, value)) = selector.reflection() {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    map
}

/// Selector reflection overlaid by the flag's metadata.
pub(super) fn metadata(selector: &Selector, flag: &Flag) -> JsonStruct {
    if *selector == Selector::All {
        return JsonStruct(flag.metadata.clone());
    }
    let mut map = selector_metadata(selector);
    for (key, value) in &flag.metadata {
        map.insert(key.clone(), value.clone());
    }
    JsonStruct(map)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn flag_not_found() -> Status {
    Status::not_found("Flag not found")
}

fn type_mismatch() -> Status {
    Status::invalid_argument("Type mismatch error")
}

/// flagd's gRPC status for an evaluation error (spec 1.8).
pub fn status(error: &ResolveError) -> Status {
    match error.code {
        ErrorCode::FlagNotFound => flag_not_found(),
        ErrorCode::TypeMismatch => type_mismatch(),
        ErrorCode::ParseError => Status::data_loss("Error parsing input or configuration"),
        ErrorCode::General => Status::unknown("General error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tonic::Code;

    fn headers(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn evaluator(settings: &Settings) -> Evaluator {
        let (_tx, rx) = watch::channel(false);
        Evaluator::new(settings, Arc::new(Store::new()), rx)
    }

    #[test]
    fn context_priority_is_request_then_static_then_header() {
        let mut settings = Settings::default();
        settings.static_context.insert("a".into(), json!("static"));
        settings.static_context.insert("b".into(), json!("static"));
        settings
            .header_context
            .push(("X-Tenant".into(), "b".into()));
        let evaluator = evaluator(&settings);
        let request = JsonStruct(
            json!({"a": "request", "b": "request", "c": "request"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let h = headers(&[("x-tenant", "header")]);

        let ctx = evaluator.context(Api::V1, &h, Some(request.clone()));
        assert_eq!(ctx["a"], json!("static"));
        assert_eq!(ctx["b"], json!("header"));
        assert_eq!(ctx["c"], json!("request"));

        // schema.v1 ignores header mappings.
        let ctx = evaluator.context(Api::SchemaV1, &h, Some(request));
        assert_eq!(ctx["b"], json!("static"));
    }

    #[test]
    fn error_codes_map_to_flagd_statuses() {
        let cases = [
            (ErrorCode::FlagNotFound, Code::NotFound, "Flag not found"),
            (
                ErrorCode::TypeMismatch,
                Code::InvalidArgument,
                "Type mismatch error",
            ),
            (
                ErrorCode::ParseError,
                Code::DataLoss,
                "Error parsing input or configuration",
            ),
            (ErrorCode::General, Code::Unknown, "General error"),
        ];
        for (code, want, message) in cases {
            let s = status(&ResolveError {
                code,
                message: "details".into(),
            });
            assert_eq!(s.code(), want);
            assert_eq!(s.message(), message);
        }
    }

    #[test]
    fn invalid_selector_message_names_the_key() {
        let s = invalid_selector("bogus=1");
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "invalid selector key \"bogus\", valid keys: \"flagSetId\", \"source\""
        );
    }

    #[test]
    fn selector_reflection_is_overlaid_by_flag_metadata() {
        let map = selector_metadata(&Selector::FlagSetId("set".into()));
        assert_eq!(map.get("flagSetId"), Some(&json!("set")));
        let map = selector_metadata(&Selector::Source("s.json".into()));
        assert_eq!(map.get("source"), Some(&json!("s.json")));
        assert!(selector_metadata(&Selector::All).is_empty());
    }

    #[test]
    fn resolve_all_type_follows_the_default_variant() {
        assert_eq!(zero_of(&json!(true)), Some(AnyValue::Bool(false)));
        assert_eq!(zero_of(&json!(3)), Some(AnyValue::Double(0.0)));
        assert_eq!(zero_of(&json!([1])), None);
        let zero = AnyValue::Double(0.0);
        assert_eq!(
            same_kind(&zero, ResolvedValue::Any(&json!(7))),
            Some(AnyValue::Double(7.0))
        );
        assert_eq!(same_kind(&zero, ResolvedValue::Any(&json!("7"))), None);
    }
}
