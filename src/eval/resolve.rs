//! flagd's resolution algorithm (spec section 5.1): flag + context -> value, variant, reason.

use serde_json::{Map, Value};

use super::{Context, Env, FractionalVersion};
use crate::flags::json_text::{
    go_json_text, needs_no_escape, write_escaped, write_go_number, InlineStr,
};
use crate::flags::{Flag, FlagState};

/// The type a caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `ResolveBoolean`.
    Boolean,
    /// `ResolveString`.
    String,
    /// `ResolveInt` (numbers truncated toward zero).
    Integer,
    /// `ResolveFloat`.
    Float,
    /// `ResolveObject` (JSON objects only).
    Object,
    /// Any JSON value except `null` (ResolveAll, OFREP).
    Any,
}

/// Why a value was chosen (flagd's reason strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No targeting; the default variant.
    Static,
    /// Targeting picked a variant.
    TargetingMatch,
    /// Targeting returned null, or there is no default variant (code default).
    Default,
    /// The flag is disabled.
    Disabled,
    /// Only inside bulk results: this flag failed.
    Error,
}

impl Reason {
    /// The wire string, e.g. `TARGETING_MATCH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

/// flagd's evaluation error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No such flag (under the selector).
    FlagNotFound,
    /// The variant's value is not of the requested type.
    TypeMismatch,
    /// The targeting rule could not be evaluated.
    ParseError,
    /// Anything else, e.g. targeting named a variant that does not exist.
    General,
}

impl ErrorCode {
    /// The wire string, e.g. `FLAG_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// A resolved value, borrowed from the flag where possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResolvedValue<'a> {
    /// A boolean.
    Bool(bool),
    /// A string.
    String(&'a str),
    /// An integer (truncated from the JSON number).
    Int(i64),
    /// A float.
    Float(f64),
    /// A JSON object.
    Object(&'a Map<String, Value>),
    /// Any JSON value (for [`ValueType::Any`]).
    Any(&'a Value),
}

/// A successful resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolution<'a> {
    /// The value; `None` for DISABLED and for a code default.
    pub value: Option<ResolvedValue<'a>>,
    /// The variant name; `None` for DISABLED and for a code default.
    pub variant: Option<&'a str>,
    /// Why.
    pub reason: Reason,
}

/// A failed resolution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ResolveError {
    /// flagd's error code.
    pub code: ErrorCode,
    /// Details for logs and OFREP `errorDetails`.
    pub message: String,
}

/// Settings that change how flags evaluate.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalOptions {
    /// Which fractional bucketing algorithm to use.
    pub fractional: FractionalVersion,
}

/// Resolves `flag` for `context` as the requested type (flagd's algorithm, spec section 5.1).
///
/// The static path (no targeting) allocates nothing; values and variant names borrow from
/// `flag`. Errors are flagd's codes: PARSE_ERROR when the rule cannot be evaluated, GENERAL
/// when it names no variant, TYPE_MISMATCH when the variant's value is not of type `want`.
pub fn resolve<'f>(
    flag: &'f Flag,
    context: &Context,
    want: ValueType,
    options: &EvalOptions,
    now_unix_secs: i64,
) -> Result<Resolution<'f>, ResolveError> {
    resolve_lazy(flag, context, want, options, || now_unix_secs)
}

/// [`resolve`] with the evaluation time read from `now` (Unix seconds) only when the flag's
/// rule can see `$flagd.timestamp` ([`crate::rules::Rule::reads_timestamp`]): static flags,
/// disabled flags and most rules never read the clock, and their answers do not depend on it.
pub fn resolve_lazy<'f>(
    flag: &'f Flag,
    context: &Context,
    want: ValueType,
    options: &EvalOptions,
    now: impl FnOnce() -> i64,
) -> Result<Resolution<'f>, ResolveError> {
    if flag.state == FlagState::Disabled {
        return Ok(Resolution {
            value: None,
            variant: None,
            reason: Reason::Disabled,
        });
    }
    let (variant, reason) = match &flag.targeting {
        Some(targeting) => {
            let rule = targeting.rule.as_ref().map_err(|e| ResolveError {
                code: ErrorCode::ParseError,
                message: format!("flag `{}`: targeting rule is invalid: {e}", flag.key),
            })?;
            let env = Env {
                context,
                flag_key: &flag.key,
                // Any value is as good as the clock's when the rule cannot see it.
                timestamp: if rule.reads_timestamp() { now() } else { 0 },
                fractional: options.fractional,
            };
            let result = rule.evaluate(&env).map_err(|e| ResolveError {
                code: ErrorCode::ParseError,
                message: format!("flag `{}`: error evaluating targeting: {e}", flag.key),
            })?;
            if result.is_null() {
                (default_variant(flag)?, Reason::Default)
            } else {
                let key = VariantKey::of(&result);
                match flag.variants.get_key_value(key.as_str()) {
                    Some(found) => (Some(found), Reason::TargetingMatch),
                    None => {
                        return Err(ResolveError {
                            code: ErrorCode::General,
                            message: format!(
                                "flag `{}`: targeting returned `{}`, which is not a variant",
                                flag.key,
                                key.as_str()
                            ),
                        })
                    }
                }
            }
        }
        None => match default_variant(flag)? {
            Some(found) => (Some(found), Reason::Static),
            None => (None, Reason::Default),
        },
    };
    let Some((name, value)) = variant else {
        // Code default: the caller's default is used, so there is nothing to type-check.
        return Ok(Resolution {
            value: None,
            variant: None,
            reason,
        });
    };
    let value = typed(value, want).ok_or_else(|| ResolveError {
        code: ErrorCode::TypeMismatch,
        message: format!(
            "flag `{}`: variant `{name}` is not of type {}",
            flag.key,
            want.as_str()
        ),
    })?;
    Ok(Resolution {
        value: Some(value),
        variant: Some(name.as_str()),
        reason,
    })
}

impl ValueType {
    /// A lower-case name for messages, e.g. `boolean`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Boolean => "boolean",
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Float => "float",
            ValueType::Object => "object",
            ValueType::Any => "any (non-null)",
        }
    }
}

/// The flag's default variant, `None` for a code default.
fn default_variant(flag: &Flag) -> Result<Option<(&String, &Value)>, ResolveError> {
    let Some(name) = flag.default_variant.as_deref() else {
        return Ok(None);
    };
    // The parser guarantees the default exists; a hand-built flag may not.
    match flag.variants.get_key_value(name) {
        Some(found) => Ok(Some(found)),
        None => Err(ResolveError {
            code: ErrorCode::General,
            message: format!(
                "flag `{}`: default variant `{name}` is not a variant",
                flag.key
            ),
        }),
    }
}

/// Reads `value` as the requested type (spec sections 5.1 step 6 and 5.8).
fn typed(value: &Value, want: ValueType) -> Option<ResolvedValue<'_>> {
    match (want, value) {
        (ValueType::Boolean, Value::Bool(b)) => Some(ResolvedValue::Bool(*b)),
        (ValueType::String, Value::String(s)) => Some(ResolvedValue::String(s)),
        (ValueType::Integer, Value::Number(n)) => Some(ResolvedValue::Int(match n.as_i64() {
            Some(i) => i,
            // Truncation toward zero, saturating, as Go's int64(float64) does in range.
            None => n.as_f64().unwrap_or(0.0) as i64,
        })),
        (ValueType::Float, Value::Number(n)) => n.as_f64().map(ResolvedValue::Float),
        (ValueType::Object, Value::Object(map)) => Some(ResolvedValue::Object(map)),
        (ValueType::Any, Value::Null) => None,
        (ValueType::Any, other) => Some(ResolvedValue::Any(other)),
        _ => None,
    }
}

/// The variant name flagd derives from a (non-null) targeting result: the result's JSON
/// text with every `"` removed. Plain strings, booleans and numbers need no heap allocation.
enum VariantKey<'a> {
    Borrowed(&'a str),
    Inline(InlineStr),
    Owned(String),
}

impl<'a> VariantKey<'a> {
    fn of(result: &'a Value) -> VariantKey<'a> {
        match result {
            Value::String(s) if needs_no_escape(s) => VariantKey::Borrowed(s),
            Value::String(s) => {
                let mut out = String::with_capacity(s.len() + 8);
                write_escaped(&mut out, s);
                out.retain(|c| c != '"');
                VariantKey::Owned(out)
            }
            Value::Bool(true) => VariantKey::Borrowed("true"),
            Value::Bool(false) => VariantKey::Borrowed("false"),
            Value::Number(n) => {
                let mut buf = InlineStr::new();
                if write_go_number(&mut buf, n).is_ok() {
                    VariantKey::Inline(buf)
                } else {
                    let mut out = String::new();
                    let _ = write_go_number(&mut out, n);
                    VariantKey::Owned(out)
                }
            }
            other => {
                let mut out = go_json_text(other);
                out.retain(|c| c != '"');
                VariantKey::Owned(out)
            }
        }
    }

    fn as_str(&self) -> &str {
        match self {
            VariantKey::Borrowed(s) => s,
            VariantKey::Inline(buf) => buf.as_str(),
            VariantKey::Owned(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flags::{parse_document, Format};

    fn flag(definition: Value) -> Flag {
        let doc = json!({ "flags": { "f": definition } });
        let mut parsed = parse_document(doc.to_string().as_bytes(), Format::Json).unwrap();
        parsed.flags.pop().unwrap()
    }

    fn run(flag: &Flag, want: ValueType) -> Result<Resolution<'_>, ResolveError> {
        resolve(flag, &Context::new(), want, &EvalOptions::default(), 0)
    }

    fn key(v: Value) -> String {
        VariantKey::of(&v).as_str().to_owned()
    }

    #[test]
    fn static_flag_resolves_to_its_default_variant() {
        let f = flag(
            json!({"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "on"}),
        );
        let r = run(&f, ValueType::Boolean).unwrap();
        assert_eq!(r.value, Some(ResolvedValue::Bool(true)));
        assert_eq!(r.variant, Some("on"));
        assert_eq!(r.reason, Reason::Static);
        assert_eq!(
            run(&f, ValueType::Any).unwrap().value,
            Some(ResolvedValue::Any(&json!(true)))
        );
    }

    #[test]
    fn disabled_flag_has_no_value() {
        let f =
            flag(json!({"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}));
        for want in [ValueType::Boolean, ValueType::String, ValueType::Any] {
            let r = run(&f, want).unwrap();
            assert_eq!(
                (r.value, r.variant, r.reason),
                (None, None, Reason::Disabled)
            );
        }
    }

    #[test]
    fn no_default_variant_is_a_code_default() {
        let f = flag(json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": null}));
        let r = run(&f, ValueType::String).unwrap();
        assert_eq!(
            (r.value, r.variant, r.reason),
            (None, None, Reason::Default)
        );
    }

    #[test]
    fn type_checks_follow_json_types() {
        let f = |v: Value| {
            flag(json!({"state": "ENABLED", "variants": {"v": v}, "defaultVariant": "v"}))
        };
        let cases: Vec<(Value, ValueType, Option<ResolvedValue>)> = vec![
            (
                json!("s"),
                ValueType::String,
                Some(ResolvedValue::String("s")),
            ),
            (json!("s"), ValueType::Boolean, None),
            (json!(3.9), ValueType::Integer, Some(ResolvedValue::Int(3))),
            (
                json!(-3.9),
                ValueType::Integer,
                Some(ResolvedValue::Int(-3)),
            ),
            (json!(10), ValueType::Integer, Some(ResolvedValue::Int(10))),
            (
                json!(10),
                ValueType::Float,
                Some(ResolvedValue::Float(10.0)),
            ),
            (
                json!(0.5),
                ValueType::Float,
                Some(ResolvedValue::Float(0.5)),
            ),
            (json!("1"), ValueType::Integer, None),
            (json!(true), ValueType::Float, None),
            (json!([1]), ValueType::Object, None),
            (json!(1), ValueType::Object, None),
        ];
        for (value, want, expected) in cases {
            let fl = f(value.clone());
            match (run(&fl, want), expected) {
                (Ok(r), Some(e)) => assert_eq!(r.value, Some(e), "{value} as {want:?}"),
                (Err(e), None) => {
                    assert_eq!(e.code, ErrorCode::TypeMismatch, "{value} as {want:?}")
                }
                (got, _) => panic!("{value} as {want:?}: {got:?}"),
            }
        }
        let obj = f(json!({"a": 1}));
        assert!(matches!(
            run(&obj, ValueType::Object).unwrap().value,
            Some(ResolvedValue::Object(m)) if m["a"] == json!(1)
        ));
        let null = f(Value::Null);
        assert_eq!(
            run(&null, ValueType::Any).unwrap_err().code,
            ErrorCode::TypeMismatch
        );
    }

    #[test]
    fn variant_keys_are_the_json_text_without_quotes() {
        assert_eq!(key(json!("plain")), "plain");
        assert_eq!(key(json!(true)), "true");
        assert_eq!(key(json!(false)), "false");
        assert_eq!(key(json!(1)), "1");
        assert_eq!(key(json!(1.0)), "1");
        assert_eq!(key(json!(2.5)), "2.5");
        assert_eq!(key(json!(1e21)), "1e+21");
        assert_eq!(key(json!("null")), "null");
        assert_eq!(key(json!("say \"hi\"")), "say \\hi\\");
        assert_eq!(key(json!("a\nb")), "a\\nb");
        assert_eq!(key(json!(["a", 1])), "[a,1]");
        assert_eq!(key(json!({"k": "v"})), "{k:v}");
        assert_eq!(key(json!("a&b<c>")), "a&b<c>");
    }

    #[test]
    fn plain_string_keys_borrow() {
        let v = json!("variant");
        assert!(matches!(VariantKey::of(&v), VariantKey::Borrowed(_)));
        let n = json!(42);
        assert!(matches!(VariantKey::of(&n), VariantKey::Inline(_)));
    }
}

#[cfg(test)]
mod targeting_tests {
    use serde_json::json;

    use super::*;
    use crate::flags::{parse_document, Format};

    fn flag(targeting: Value, default: Value) -> Flag {
        let doc = json!({"flags": {"f": {"state": "ENABLED",
            "variants": {"one": 1, "two": 2, "true": 3, "1": 4, "[a,1]": 5},
            "defaultVariant": default, "targeting": targeting}}});
        let mut parsed = parse_document(doc.to_string().as_bytes(), Format::Json).unwrap();
        parsed.flags.pop().unwrap()
    }

    fn run(flag: &Flag, ctx: Value) -> Result<Resolution<'_>, ResolveError> {
        let Value::Object(ctx) = ctx else { panic!() };
        resolve(
            flag,
            &ctx,
            ValueType::Integer,
            &EvalOptions::default(),
            1_700_000_000,
        )
    }

    #[test]
    fn targeting_selects_a_variant() {
        let f = flag(
            json!({"if": [{"==": [{"var": "tier"}, "gold"]}, "one", "two"]}),
            json!("two"),
        );
        let r = run(&f, json!({"tier": "gold"})).unwrap();
        assert_eq!(
            (r.value, r.variant, r.reason),
            (
                Some(ResolvedValue::Int(1)),
                Some("one"),
                Reason::TargetingMatch
            )
        );
        let r = run(&f, json!({"tier": "silver"})).unwrap();
        assert_eq!((r.variant, r.reason), (Some("two"), Reason::TargetingMatch));
    }

    #[test]
    fn non_string_results_select_by_their_json_text() {
        for (rule, variant) in [
            (json!(true), "true"),
            (json!({"+": [0.5, 0.5]}), "1"),
            (json!({"merge": [["a"], [1]]}), "[a,1]"),
        ] {
            let f = flag(json!({"if": [true, rule]}), json!("two"));
            assert_eq!(run(&f, json!({})).unwrap().variant, Some(variant));
        }
    }

    #[test]
    fn null_result_falls_back_to_the_default_variant() {
        let f = flag(json!({"if": [false, "one"]}), json!("two"));
        let r = run(&f, json!({})).unwrap();
        assert_eq!((r.variant, r.reason), (Some("two"), Reason::Default));
        let code_default = flag(json!({"if": [false, "one"]}), Value::Null);
        let r = run(&code_default, json!({})).unwrap();
        assert_eq!(
            (r.value, r.variant, r.reason),
            (None, None, Reason::Default)
        );
    }

    #[test]
    fn unknown_variant_is_general() {
        let f = flag(json!({"if": [true, "three"]}), json!("two"));
        assert_eq!(run(&f, json!({})).unwrap_err().code, ErrorCode::General);
    }

    #[test]
    fn rules_that_do_not_compile_are_parse_errors() {
        // An unknown operator fails when evaluated (jsonlogic v3.9.1), still PARSE_ERROR.
        let f = flag(json!({"no-such-op": [1]}), json!("two"));
        assert_eq!(run(&f, json!({})).unwrap_err().code, ErrorCode::ParseError);
        let unresolved = flag(
            json!({"if": [{"$ref": "missing"}, "one", "two"]}),
            json!("two"),
        );
        assert_eq!(
            run(&unresolved, json!({})).unwrap_err().code,
            ErrorCode::ParseError
        );
    }

    #[test]
    fn null_targeting_evaluates_to_default() {
        let f = flag(Value::Null, json!("two"));
        assert!(f.targeting.is_some());
        let r = run(&f, json!({})).unwrap();
        assert_eq!((r.variant, r.reason), (Some("two"), Reason::Default));
    }

    #[test]
    fn flagd_properties_are_visible_to_rules() {
        let f = flag(
            json!({"if": [{"and": [
            {"==": [{"var": "$flagd.flagKey"}, "f"]},
            {"==": [{"var": "$flagd.timestamp"}, 1_700_000_000]}]}, "one", "two"]}),
            json!("two"),
        );
        assert_eq!(run(&f, json!({})).unwrap().variant, Some("one"));
    }

    #[test]
    fn evaluators_are_inlined_before_compiling() {
        let doc = json!({"$evaluators": {"gold": {"==": [{"var": "tier"}, "gold"]}},
            "flags": {"f": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "two",
                "targeting": {"if": [{ "$ref": "gold" }, "one", "two"]}}}});
        let parsed = parse_document(doc.to_string().as_bytes(), Format::Json).unwrap();
        let f = &parsed.flags[0];
        assert_eq!(
            f.targeting.as_ref().unwrap().raw,
            json!({"if": [{"==": [{"var": "tier"}, "gold"]}, "one", "two"]})
        );
        assert_eq!(
            run(f, json!({"tier": "gold"})).unwrap().variant,
            Some("one")
        );
    }
}

#[cfg(test)]
mod clock_tests {
    use std::cell::Cell;

    use serde_json::json;

    use super::*;
    use crate::flags::{parse_document, Format};

    fn flag(definition: Value) -> Flag {
        let doc = json!({ "flags": { "f": definition } });
        let mut parsed = parse_document(doc.to_string().as_bytes(), Format::Json).unwrap();
        parsed.flags.pop().unwrap()
    }

    /// Resolves with a clock answering `now` and counting its reads.
    fn run_counting(flag: &Flag, now: i64) -> (Option<&str>, usize) {
        let reads = Cell::new(0);
        let clock = || {
            reads.set(reads.get() + 1);
            now
        };
        let r = resolve_lazy(
            flag,
            &Context::new(),
            ValueType::Boolean,
            &EvalOptions::default(),
            clock,
        )
        .unwrap();
        (r.variant, reads.get())
    }

    fn targeted(rule: Value) -> Flag {
        flag(
            json!({"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": rule}),
        )
    }

    #[test]
    fn a_rule_reading_the_timestamp_gets_the_clock() {
        let f = targeted(json!({"if": [{">": [{"var": "$flagd.timestamp"}, 1000]}, "on", "off"]}));
        assert_eq!(run_counting(&f, 2000), (Some("on"), 1));
        assert_eq!(run_counting(&f, 500), (Some("off"), 1));
        // Through the whole `$flagd` object and through the whole data.
        let f = targeted(
            json!({"if": [{">": [{"var": {"cat": ["$flagd", ".timestamp"]}}, 1000]}, "on", "off"]}),
        );
        assert_eq!(run_counting(&f, 2000), (Some("on"), 1));
    }

    #[test]
    fn a_static_flag_or_a_rule_blind_to_time_does_not_read_the_clock() {
        let f = flag(
            json!({"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "on"}),
        );
        assert_eq!(run_counting(&f, 2000), (Some("on"), 0));
        let f = targeted(json!({"if": [{"==": [{"var": "$flagd.flagKey"}, "f"]}, "on", "off"]}));
        assert_eq!(run_counting(&f, 2000), (Some("on"), 0));
        let f = flag(
            json!({"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on",
            "targeting": {"var": "$flagd.timestamp"}}),
        );
        let reads = Cell::new(0);
        resolve_lazy(
            &f,
            &Context::new(),
            ValueType::Boolean,
            &EvalOptions::default(),
            || {
                reads.set(reads.get() + 1);
                0
            },
        )
        .unwrap();
        assert_eq!(reads.get(), 0);
    }
}
