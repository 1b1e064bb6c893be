//! The targeting engine: JSONLogic rules compiled once into a node tree, evaluated per request
//! without copying the context, with flagd's custom operators (`fractional`, `sem_ver`,
//! `starts_with`, `ends_with`). Semantics follow the Go engine flagd embeds
//! (diegoholiveira/jsonlogic v3.9.1, as flagd v0.16.1 pins it); the `val` module holds its
//! coercions. docs/adr/0001-targeting-engine.md lists each behaviour and its v3.9.1 source.
//!
//! Hostile rules are bounded: nesting depth and node count are checked at compile time (so
//! neither compiling nor evaluating can overflow the stack) and every evaluation has a step
//! budget that also counts loop iterations and bulk string/array work.

use std::borrow::Cow;

use serde_json::Value;

/// The evaluation context as rules read it: a JSON object.
pub type Context = serde_json::Map<String, serde_json::Value>;

mod cbor;
mod fractional;
mod interp;
mod murmur3;
mod node;
mod semver;
mod strings;
mod val;

#[cfg(test)]
mod tests;

/// Deepest nesting of operators/arrays a rule may have.
pub(crate) const MAX_DEPTH: usize = 128;
/// Most nodes a compiled rule may have.
pub(crate) const MAX_NODES: usize = 100_000;
/// Most work units (node visits, loop iterations, copied elements and 64-byte text chunks)
/// one evaluation may use.
pub(crate) const MAX_STEPS: u64 = 1_000_000;

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
    /// Evaluation time in Unix seconds (`$flagd.timestamp`); never read when the rule's
    /// [`Rule::reads_timestamp`] is `false`.
    pub timestamp: i64,
    /// The fractional algorithm to use.
    pub fractional: FractionalVersion,
}

/// A JSONLogic rule compiled once at load.
#[derive(Debug)]
pub struct Rule {
    root: node::Node,
    unknown: Option<Box<str>>,
    reads_clock: bool,
}

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
    pub fn compile(rule: &Value) -> Result<Rule, CompileError> {
        let mut compiler = node::Compiler::new();
        let root = compiler.compile(rule, 0)?;
        Ok(Rule {
            root,
            unknown: compiler.unknown,
            reads_clock: compiler.reads_clock,
        })
    }

    /// Whether evaluating the rule may read [`Env::timestamp`] (`$flagd.timestamp`, the
    /// `$flagd` object, the whole data, or a path computed at run time). When `false` the
    /// caller need not read the clock: any timestamp gives the same answer.
    pub fn reads_timestamp(&self) -> bool {
        self.reads_clock
    }

    /// The first operator the rule names that the engine does not know. Such a rule still
    /// compiles (flagd's engine only fails when it reaches the operator, answering
    /// PARSE_ERROR), but a loader may want to warn about it.
    pub fn unknown_operator(&self) -> Option<&str> {
        self.unknown.as_deref()
    }

    /// Evaluates the rule; the result may borrow from the rule or the context.
    pub fn evaluate<'a>(&'a self, env: &Env<'a>) -> Result<Cow<'a, Value>, EvalError> {
        let mut cx = interp::Cx::new(*env);
        self.root.eval(interp::Scope::ROOT, &mut cx)?.into_cow()
    }
}
