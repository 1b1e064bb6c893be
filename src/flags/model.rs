use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::rules::{CompileError, Rule};

/// Whether a flag is served (`ENABLED`) or answers with reason `DISABLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagState {
    /// Evaluated normally (also any `state` other than exactly `"DISABLED"`, as in flagd).
    Enabled,
    /// Resolves successfully with reason `DISABLED` and no value.
    Disabled,
}

/// One flag of a loaded document, with its targeting compiled once at load.
#[derive(Debug)]
pub struct Flag {
    /// The flag key.
    pub key: String,
    /// Enabled or disabled.
    pub state: FlagState,
    /// The default variant; `None` means "code default" (the caller's default is used).
    pub default_variant: Option<String>,
    /// Variant name to value, sorted by name.
    pub variants: BTreeMap<String, Value>,
    /// Targeting rule; `None` when absent or `{}`.
    pub targeting: Option<Targeting>,
    /// Set-level metadata overlaid by flag-level metadata (null values dropped).
    pub metadata: Map<String, Value>,
    /// The flag set this flag belongs to (merged `metadata.flagSetId`), if any.
    pub flag_set_id: Option<String>,
}

/// A flag's targeting rule: the JSON as written (after `$ref` inlining) and its compiled form.
#[derive(Debug)]
pub struct Targeting {
    /// The rule as JSON, `$ref`s already inlined (what the sync service sends).
    pub raw: Value,
    /// The compiled rule, or why it cannot be evaluated (answered with PARSE_ERROR, as flagd does).
    pub rule: Result<Rule, CompileError>,
}
