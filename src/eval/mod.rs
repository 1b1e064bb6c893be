//! Resolution: the algorithm that turns a flag plus a context into a value, variant and
//! reason. It sits above [`crate::flags`] (the model) and [`crate::rules`] (the JSONLogic
//! engine); the engine's types are re-exported here for the layers above.

mod resolve;

pub use crate::rules::{CompileError, Context, Env, EvalError, FractionalVersion, Rule};
pub use resolve::{
    resolve, resolve_lazy, ErrorCode, EvalOptions, Reason, Resolution, ResolveError, ResolvedValue,
    ValueType,
};
