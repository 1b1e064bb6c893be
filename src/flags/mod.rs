//! The flagd flag-definition model: documents, flags, variants and metadata.
//!
//! [`parse_document`] turns a JSON or YAML flag document into validated, compiled
//! [`Flag`]s, rejecting what flagd rejects and reporting what flagd only warns about.

mod evaluators;
pub(crate) mod json_text;
mod model;
mod parse;
mod yaml;

pub use model::{Flag, FlagState, Targeting};
pub use parse::{parse_document, FlagDocument, Format, ParseError, Warning};
pub(crate) use yaml::parse_yaml;
