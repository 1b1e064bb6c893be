use serde_json::{Map, Value};

use super::{Context, FractionalVersion};
use crate::flags::Flag;

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
pub fn resolve<'f>(
    _flag: &'f Flag,
    _context: &Context,
    _want: ValueType,
    _options: &EvalOptions,
    _now_unix_secs: i64,
) -> Result<Resolution<'f>, ResolveError> {
    todo!("eval::resolve")
}
