//! The targeting engine: compiled JSONLogic with flagd's operators, and the resolution
//! algorithm that turns a flag plus a context into a value, variant and reason.

mod logic;
mod resolve;

pub use logic::{CompileError, Env, EvalError, FractionalVersion, Rule};
pub use resolve::{
    resolve, ErrorCode, EvalOptions, Reason, Resolution, ResolveError, ResolvedValue, ValueType,
};

/// The evaluation context as the evaluator reads it: a JSON object.
pub type Context = serde_json::Map<String, serde_json::Value>;
