//! Evaluation requests as every protocol shares them: a parsed selector and plain context
//! inputs in, a typed [`Evaluation`] or an [`EvaluationError`] out. It sits above
//! [`store`](crate::store) and knows no transport: each protocol under `service` parses its
//! own request (selector header, context body) and maps the result once at its edge.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::eval::{
    resolve_lazy, Context, ErrorCode, EvalOptions, FractionalVersion, Reason, ResolveError,
    ResolvedValue, ValueType,
};
use crate::flags::{Flag, FlagState};
use crate::store::{Selector, Store};

/// Response metadata: selector reflection overlaid by the flag's metadata.
pub(crate) type Metadata = Map<String, Value>;

/// Which flagd API generation's semantics apply; they differ only in edge cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `flagd.evaluation.v1`: a code default is FLAG_NOT_FOUND, DISABLED has a zero value.
    V1,
    /// `flagd.evaluation.v2` (and OFREP): code default and DISABLED leave value and variant
    /// unset.
    V2,
    /// `schema.v1` (legacy): no header context, no stream deadline, code default is `FALLBACK`.
    SchemaV1,
}

impl Api {
    /// Whether `-H` header mappings apply (flagd skips them on schema.v1).
    fn uses_header_context(self) -> bool {
        self != Api::SchemaV1
    }

    /// Whether `--stream-deadline` applies to event streams (flagd skips it on schema.v1).
    pub(crate) fn uses_stream_deadline(self) -> bool {
        self != Api::SchemaV1
    }
}

/// The request headers a protocol received, as far as `-H` header mappings read them.
pub(crate) trait Headers {
    /// The value of header `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// No headers (e.g. a request that carries none).
impl Headers for () {
    fn header(&self, _name: &str) -> Option<&[u8]> {
        None
    }
}

/// A single-flag evaluation as every protocol sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluation<T> {
    /// The value; `None` for DISABLED and for a code default.
    pub value: Option<T>,
    /// The variant; `None` for DISABLED and for a code default.
    pub variant: Option<String>,
    /// The reason string.
    pub reason: &'static str,
    /// Selector reflection overlaid by the flag's metadata.
    pub metadata: Metadata,
}

impl<T> Evaluation<T> {
    /// The same evaluation with its value converted by `f` (e.g. into a wire type).
    pub(crate) fn map_value<U>(self, f: impl FnOnce(T) -> U) -> Evaluation<U> {
        Evaluation {
            value: self.value.map(f),
            variant: self.variant,
            reason: self.reason,
            metadata: self.metadata,
        }
    }
}

/// A failed single-flag evaluation: flagd's error code, details, and the metadata an error
/// response carries (selector reflection, overlaid by the flag's metadata if it exists).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct EvaluationError {
    /// flagd's error code.
    pub code: ErrorCode,
    /// Details for logs; borrowed for the fixed messages, so a missing flag allocates none.
    pub message: Cow<'static, str>,
    /// Metadata for error bodies that carry it (OFREP).
    pub metadata: Metadata,
}

impl EvaluationError {
    fn new(
        code: ErrorCode,
        message: impl Into<Cow<'static, str>>,
        metadata: Metadata,
    ) -> EvaluationError {
        EvaluationError {
            code,
            message: message.into(),
            metadata,
        }
    }

    fn resolve(error: ResolveError, metadata: Metadata) -> EvaluationError {
        EvaluationError::new(error.code, error.message, metadata)
    }
}

/// A requested value type (one per single-flag RPC) and how it leaves the evaluator.
pub(crate) trait Kind {
    /// The Rust type of the evaluated value.
    type Value: Default;
    /// What [`resolve`] is asked for.
    const TYPE: ValueType;
    /// Converts a resolved value of [`Self::TYPE`]; `None` if it is of another type.
    fn convert(value: ResolvedValue<'_>) -> Option<Self::Value>;
}

/// `ResolveBoolean`.
#[derive(Debug)]
pub(crate) struct BoolKind;
/// `ResolveString`.
#[derive(Debug)]
pub(crate) struct StringKind;
/// `ResolveInt`.
#[derive(Debug)]
pub(crate) struct IntKind;
/// `ResolveFloat`.
#[derive(Debug)]
pub(crate) struct FloatKind;
/// `ResolveObject`.
#[derive(Debug)]
pub(crate) struct ObjectKind;

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
    type Value = Map<String, Value>;
    const TYPE: ValueType = ValueType::Object;
    fn convert(value: ResolvedValue<'_>) -> Option<Map<String, Value>> {
        match value {
            ResolvedValue::Object(map) | ResolvedValue::Any(Value::Object(map)) => {
                Some(map.clone())
            }
            _ => None,
        }
    }
}

/// Any JSON value except `null` (OFREP), as flagd's `ResolveAsAnyValue`.
#[derive(Debug)]
pub(crate) struct AnyKind;

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
pub(crate) enum BulkValue {
    /// `bool_value`.
    Bool(bool),
    /// `string_value`.
    String(String),
    /// `double_value` (integers too).
    Double(f64),
    /// `object_value`.
    Object(Map<String, Value>),
}

/// One entry of a ResolveAll evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BulkEntry {
    /// The flag key (the response map key).
    pub key: String,
    /// `STATIC`, `TARGETING_MATCH`, `DEFAULT`, `DISABLED` or `ERROR`.
    pub reason: &'static str,
    /// The variant (`""` when none).
    pub variant: String,
    /// The value, zero for DISABLED and errors.
    pub value: BulkValue,
    /// Selector reflection overlaid by the flag's metadata.
    pub metadata: Metadata,
    /// Why the entry is an error, if it is one (its `reason` is then `ERROR`).
    pub error: Option<ErrorCode>,
}

impl BulkEntry {
    /// The entry as one evaluation result for an [`Observer`].
    pub(crate) fn result(&self) -> Result<(&str, &'static str), ErrorCode> {
        match self.error {
            None => Ok((&self.variant, self.reason)),
            Some(code) => Err(code),
        }
    }
}

/// A ResolveAll evaluation: entries in (flagSetId, key) order, later duplicates win.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BulkEvaluation {
    /// The evaluated flags.
    pub flags: Vec<BulkEntry>,
    /// Selector reflection only.
    pub metadata: Metadata,
}

/// Where the evaluator reports each flag it evaluated (the metrics, at the edge).
pub(crate) trait Observer: fmt::Debug + Send + Sync {
    /// One evaluation of `flag_key`: its variant (`""` if none) and reason, or its error code.
    fn evaluated(&self, flag_key: &str, result: Result<(&str, &'static str), ErrorCode>);

    /// Every entry of one bulk evaluation (ResolveAll, OFREP bulk), so that an observer can
    /// take its per-thread state once per request instead of once per flag.
    fn evaluated_all(&self, entries: &[BulkEntry]) {
        for entry in entries {
            self.evaluated(&entry.key, entry.result());
        }
    }
}

/// Reports nothing (Lambda's function mode has no metrics port).
#[cfg(any(test, feature = "lambda"))]
#[derive(Debug)]
pub(crate) struct Unobserved;

#[cfg(any(test, feature = "lambda"))]
impl Observer for Unobserved {
    fn evaluated(&self, _flag_key: &str, _result: Result<(&str, &'static str), ErrorCode>) {}
}

/// How evaluations are configured (built by the daemon from its settings).
#[derive(Debug, Clone, Default)]
pub(crate) struct EvaluatorConfig {
    /// `-X` static context values, overriding the request context.
    pub static_context: Vec<(String, Value)>,
    /// `-H` mappings: header name (any case) to context key, overriding static values.
    pub header_context: Vec<(String, String)>,
    /// The `fractional` algorithm version.
    pub fractional: FractionalVersion,
}

/// The shared evaluation core behind every protocol.
#[derive(Debug)]
pub(crate) struct Evaluator {
    store: Arc<Store>,
    static_context: Vec<(String, Value)>,
    header_context: Vec<(String, String)>,
    options: EvalOptions,
    observer: Arc<dyn Observer>,
    /// Unix seconds now; read only for rules that can see `$flagd.timestamp`.
    clock: fn() -> i64,
}

impl Evaluator {
    /// An evaluator over `store`, reporting each evaluation to `observer`.
    pub(crate) fn new(
        config: EvaluatorConfig,
        store: Arc<Store>,
        observer: Arc<dyn Observer>,
    ) -> Self {
        Evaluator {
            store,
            static_context: config.static_context,
            header_context: config
                .header_context
                .into_iter()
                .map(|(header, key)| (header.to_ascii_lowercase(), key))
                .collect(),
            options: EvalOptions {
                fractional: config.fractional,
            },
            observer,
            clock: now,
        }
    }

    /// The same evaluator reading the time from `clock` (tests count the reads).
    #[cfg(test)]
    fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    /// The store evaluated against (event and sync streams subscribe to it).
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Evaluates one flag as type `K` (ResolveBoolean, ResolveString, ...).
    pub(crate) fn evaluate<K: Kind>(
        &self,
        api: Api,
        selector: &Selector,
        flag_key: &str,
        context: Option<Context>,
        headers: &impl Headers,
    ) -> Result<Evaluation<K::Value>, EvaluationError> {
        let context = self.context(api, headers, context);
        let snapshot = self.store.current();
        let result = match snapshot.get(flag_key, selector) {
            Some(stored) => self.outcome::<K>(api, selector, &stored.flag, &context, self.clock),
            None => Err(flag_not_found(selector_metadata(selector))),
        };
        self.record(flag_key, &result);
        result
    }

    /// Evaluates every flag visible under `selector` as type `K`, in (flagSetId, key)
    /// order, handing each flag and its result to `each` (OFREP bulk); returns the selector
    /// reflection.
    pub(crate) fn evaluate_each<K: Kind>(
        &self,
        api: Api,
        selector: &Selector,
        context: Option<Context>,
        headers: &impl Headers,
        mut each: impl FnMut(&Flag, Result<Evaluation<K::Value>, EvaluationError>),
    ) -> Metadata {
        let context = self.context(api, headers, context);
        let snapshot = self.store.current();
        // One time for the whole request, read at most once and only if a rule needs it.
        let time = OnceCell::new();
        let now = || *time.get_or_init(self.clock);
        for stored in snapshot.flags(selector) {
            let result = self.outcome::<K>(api, selector, &stored.flag, &context, now);
            self.record(&stored.flag.key, &result);
            each(&stored.flag, result);
        }
        selector_metadata(selector)
    }

    /// Counts one single-flag result.
    fn record<T>(&self, flag_key: &str, result: &Result<Evaluation<T>, EvaluationError>) {
        self.observer.evaluated(
            flag_key,
            match result {
                Ok(outcome) => Ok((outcome.variant.as_deref().unwrap_or(""), outcome.reason)),
                Err(error) => Err(error.code),
            },
        );
    }

    /// One found flag evaluated as type `K`: the part of a single-flag request after the
    /// lookup.
    fn outcome<K: Kind>(
        &self,
        api: Api,
        selector: &Selector,
        flag: &Flag,
        context: &Context,
        now: impl FnOnce() -> i64,
    ) -> Result<Evaluation<K::Value>, EvaluationError> {
        let metadata = metadata(selector, flag);
        let resolution = match resolve_lazy(flag, context, K::TYPE, &self.options, now) {
            Ok(resolution) => resolution,
            Err(error) => return Err(EvaluationError::resolve(error, metadata)),
        };
        match resolution.value {
            Some(value) => match K::convert(value) {
                Some(value) => Ok(Evaluation {
                    value: Some(value),
                    variant: resolution.variant.map(str::to_owned),
                    reason: resolution.reason.as_str(),
                    metadata,
                }),
                None => Err(EvaluationError::new(
                    ErrorCode::TypeMismatch,
                    "the variant's value is not of the requested type",
                    metadata,
                )),
            },
            None if resolution.reason == Reason::Disabled => Ok(Evaluation {
                value: None,
                variant: None,
                reason: Reason::Disabled.as_str(),
                metadata,
            }),
            // No default variant and no targeting match: the caller's default applies.
            None => match api {
                Api::V1 => Err(flag_not_found(metadata)),
                Api::V2 => Ok(Evaluation {
                    value: None,
                    variant: None,
                    reason: Reason::Default.as_str(),
                    metadata,
                }),
                // flagd's internal sentinel leaks through schema.v1 (spec 1.4).
                Api::SchemaV1 => Ok(Evaluation {
                    value: None,
                    variant: None,
                    reason: "FALLBACK",
                    metadata,
                }),
            },
        }
    }

    /// Evaluates every flag visible under `selector` (spec 1.6).
    pub(crate) fn evaluate_all(
        &self,
        api: Api,
        selector: &Selector,
        context: Option<Context>,
        headers: &impl Headers,
    ) -> BulkEvaluation {
        let context = self.context(api, headers, context);
        let snapshot = self.store.current();
        // One time for the whole request, read at most once and only if a rule needs it.
        let time = OnceCell::new();
        let now = || *time.get_or_init(self.clock);
        let mut flags = Vec::new();
        for stored in snapshot.flags(selector) {
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
            let metadata = metadata(selector, flag);
            let (reason, variant, value, failure) = if flag.state == FlagState::Disabled {
                (Reason::Disabled.as_str(), String::new(), zero, None)
            } else {
                match resolve_lazy(flag, &context, ValueType::Any, &self.options, now) {
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
            flags.push(BulkEntry {
                key: flag.key.clone(),
                reason,
                variant,
                value,
                metadata,
                error: failure,
            });
        }
        self.observer.evaluated_all(&flags);
        BulkEvaluation {
            flags,
            metadata: selector_metadata(selector),
        }
    }

    /// Request context < static `-X` values < header-mapped `-H` values (spec 5.2).
    fn context(&self, api: Api, headers: &impl Headers, request: Option<Context>) -> Context {
        let mut context = request.unwrap_or_default();
        for (key, value) in &self.static_context {
            context.insert(key.clone(), value.clone());
        }
        if api.uses_header_context() {
            for (header, key) in &self.header_context {
                if let Some(value) = headers.header(header) {
                    let text = String::from_utf8_lossy(value).into_owned();
                    context.insert(key.clone(), Value::String(text));
                }
            }
        }
        context
    }
}

fn flag_not_found(metadata: Metadata) -> EvaluationError {
    EvaluationError::new(ErrorCode::FlagNotFound, "flag not found", metadata)
}

/// The zero value of the default variant's type, or `None` if ResolveAll cannot carry it.
fn zero_of(default: &Value) -> Option<BulkValue> {
    match default {
        Value::Bool(_) => Some(BulkValue::Bool(false)),
        Value::String(_) => Some(BulkValue::String(String::new())),
        Value::Number(_) => Some(BulkValue::Double(0.0)),
        Value::Object(_) => Some(BulkValue::Object(Map::new())),
        Value::Null | Value::Array(_) => None,
    }
}

/// `value` as a [`BulkValue`] if it has the same type as `zero`.
fn same_kind(zero: &BulkValue, value: ResolvedValue<'_>) -> Option<BulkValue> {
    let json = match value {
        ResolvedValue::Any(v) => v,
        ResolvedValue::Bool(b) => {
            return matches!(zero, BulkValue::Bool(_)).then_some(BulkValue::Bool(b))
        }
        ResolvedValue::String(s) => {
            return matches!(zero, BulkValue::String(_)).then(|| BulkValue::String(s.to_owned()))
        }
        ResolvedValue::Int(i) => {
            return matches!(zero, BulkValue::Double(_)).then_some(BulkValue::Double(i as f64))
        }
        ResolvedValue::Float(f) => {
            return matches!(zero, BulkValue::Double(_)).then_some(BulkValue::Double(f))
        }
        ResolvedValue::Object(map) => {
            return matches!(zero, BulkValue::Object(_)).then(|| BulkValue::Object(map.clone()))
        }
    };
    match (zero, json) {
        (BulkValue::Bool(_), Value::Bool(b)) => Some(BulkValue::Bool(*b)),
        (BulkValue::String(_), Value::String(s)) => Some(BulkValue::String(s.clone())),
        (BulkValue::Double(_), Value::Number(n)) => n.as_f64().map(BulkValue::Double),
        (BulkValue::Object(_), Value::Object(map)) => Some(BulkValue::Object(map.clone())),
        _ => None,
    }
}

/// `flagSetId` / `source` from the selector, as flagd reflects it into response metadata.
pub(crate) fn selector_metadata(selector: &Selector) -> Metadata {
    let mut map = Map::new();
    if let Some((key, value)) = selector.reflection() {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    map
}

/// Selector reflection overlaid by the flag's metadata.
fn metadata(selector: &Selector, flag: &Flag) -> Metadata {
    if *selector == Selector::All {
        return flag.metadata.clone();
    }
    let mut map = selector_metadata(selector);
    for (key, value) in &flag.metadata {
        map.insert(key.clone(), value.clone());
    }
    map
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Pairs(&'static [(&'static str, &'static str)]);

    impl Headers for Pairs {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn context_priority_is_request_then_static_then_header() {
        let config = EvaluatorConfig {
            static_context: vec![("a".into(), json!("static")), ("b".into(), json!("static"))],
            header_context: vec![("X-Tenant".into(), "b".into())],
            ..EvaluatorConfig::default()
        };
        let evaluator = Evaluator::new(config, Arc::new(Store::new()), Arc::new(Unobserved));
        let request = json!({"a": "request", "b": "request", "c": "request"})
            .as_object()
            .unwrap()
            .clone();
        let h = Pairs(&[("x-tenant", "header")]);

        let ctx = evaluator.context(Api::V1, &h, Some(request.clone()));
        assert_eq!(ctx["a"], json!("static"));
        assert_eq!(ctx["b"], json!("header"));
        assert_eq!(ctx["c"], json!("request"));

        // schema.v1 ignores header mappings.
        let ctx = evaluator.context(Api::SchemaV1, &h, Some(request));
        assert_eq!(ctx["b"], json!("static"));
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
        assert_eq!(zero_of(&json!(true)), Some(BulkValue::Bool(false)));
        assert_eq!(zero_of(&json!(3)), Some(BulkValue::Double(0.0)));
        assert_eq!(zero_of(&json!([1])), None);
        let zero = BulkValue::Double(0.0);
        assert_eq!(
            same_kind(&zero, ResolvedValue::Any(&json!(7))),
            Some(BulkValue::Double(7.0))
        );
        assert_eq!(same_kind(&zero, ResolvedValue::Any(&json!("7"))), None);
    }

    #[test]
    fn a_missing_flag_fails_with_the_selector_reflection() {
        let evaluator = Evaluator::new(
            EvaluatorConfig::default(),
            Arc::new(Store::new()),
            Arc::new(Unobserved),
        );
        let selector = Selector::FlagSetId("set".into());
        let error = evaluator
            .evaluate::<BoolKind>(Api::V2, &selector, "nope", None, &())
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::FlagNotFound);
        assert_eq!(error.metadata.get("flagSetId"), Some(&json!("set")));
    }

    thread_local! {
        static CLOCK_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A clock at 2000 s that counts its reads on this thread.
    fn counting_clock() -> i64 {
        CLOCK_READS.with(|n| n.set(n.get() + 1));
        2000
    }

    fn clock_reads() -> usize {
        CLOCK_READS.with(|n| n.replace(0))
    }

    #[test]
    fn the_clock_is_read_only_for_rules_that_see_the_timestamp() {
        let store = Arc::new(Store::new());
        let document = json!({"flags": {
            "static": {"state": "ENABLED", "variants": {"on": true, "off": false},
                "defaultVariant": "on"},
            "email": {"state": "ENABLED", "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"in": ["@a.com", {"var": "email"}]}, "on", "off"]}},
            "late": {"state": "ENABLED", "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 1000]}, "on", "off"]}},
            "later": {"state": "ENABLED", "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 3000]}, "on", "off"]}}
        }});
        let parsed = crate::flags::parse_document(
            document.to_string().as_bytes(),
            crate::flags::Format::Json,
        )
        .unwrap();
        store.apply(0, "test", parsed);
        let evaluator = Evaluator::new(EvaluatorConfig::default(), store, Arc::new(Unobserved))
            .with_clock(counting_clock);
        clock_reads();
        let variant = |key: &str| {
            evaluator
                .evaluate::<BoolKind>(Api::V2, &Selector::All, key, None, &())
                .unwrap()
                .variant
        };

        assert_eq!(variant("static").as_deref(), Some("on"));
        assert_eq!(variant("email").as_deref(), Some("off"));
        assert!(evaluator
            .evaluate::<BoolKind>(Api::V2, &Selector::All, "missing", None, &())
            .is_err());
        assert_eq!(clock_reads(), 0);

        assert_eq!(variant("late").as_deref(), Some("on"));
        assert_eq!(variant("later").as_deref(), Some("off"));
        assert_eq!(clock_reads(), 2);

        // ResolveAll reads the clock once for all its rules.
        let all = evaluator.evaluate_all(Api::V2, &Selector::All, None, &());
        assert_eq!(all.flags.len(), 4);
        assert_eq!(clock_reads(), 1);
    }
}
