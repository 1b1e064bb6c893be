use std::borrow::Cow;

use serde_json::Value;

use super::Context;

/// Which fractional bucketing algorithm `fractional` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FractionalVersion {
    /// flagd >= 0.15: MurmurHash3 x86_32 of the string, `(hash * total) >> 32`.
    #[default]
    V2,
    /// The CBOR-based bucketing newer in-process evaluators use.
    V3,
}

/// Everything a rule can read while it is evaluated, borrowed for one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The request context (already merged with static and header values).
    pub context: &'a Context,
    /// The flag being evaluated (`$flagd.flagKey`).
    pub flag_key: &'a str,
    /// Evaluation time in Unix seconds (`$flagd.timestamp`).
    pub timestamp: i64,
    /// The fractional algorithm to use.
    pub fractional: FractionalVersion,
}

/// A JSONLogic rule compiled once at load.
#[derive(Debug)]
pub struct Rule {}

/// Why a rule could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

/// Why an evaluation failed (answered as PARSE_ERROR).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl Rule {
    /// Compiles a JSONLogic rule.
    pub fn compile(_rule: &Value) -> Result<Rule, CompileError> {
        todo!("Rule::compile")
    }

    /// Evaluates the rule; the result may borrow from the rule or the context.
    pub fn evaluate<'a>(&'a self, _env: &Env<'a>) -> Result<Cow<'a, Value>, EvalError> {
        todo!("Rule::evaluate")
    }
}
