use std::path::Path;

use super::Flag;

/// The serialization of a flag document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (`.json`, `application/json`).
    Json,
    /// YAML (`.yaml`, `.yml`, `application/yaml`, `application/x-yaml`).
    Yaml,
}

impl Format {
    /// Picks the format from a path's extension, as flagd does (`None` for other extensions).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// A parsed, validated flag document.
#[derive(Debug, Default)]
pub struct FlagDocument {
    /// The flags in document order (a key may repeat across flag sets in the array form).
    pub flags: Vec<Flag>,
    /// Problems flagd only warns about (schema violations); the document is still usable.
    pub warnings: Vec<Warning>,
}

/// A non-fatal problem found while loading a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The flag concerned, if the problem belongs to one flag.
    pub flag: Option<String>,
    /// What is wrong, for humans.
    pub message: String,
}

/// Why a whole document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The document is not valid JSON/YAML or does not have the flagd shape.
    #[error("invalid flag document: {0}")]
    Syntax(String),
    /// A flag's `defaultVariant` names a variant that does not exist.
    #[error("flag `{flag}`: defaultVariant `{variant}` is not one of its variants")]
    MissingDefaultVariant {
        /// The flag key.
        flag: String,
        /// The missing variant name.
        variant: String,
    },
    /// Any other structural problem that makes flagd reject the document.
    #[error("flag `{flag}`: {message}")]
    InvalidFlag {
        /// The flag key.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// A `$evaluators` entry is empty or unusable.
    #[error("evaluator `{name}`: {message}")]
    InvalidEvaluator {
        /// The evaluator name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses and validates a flag document; see the module docs.
pub fn parse_document(_text: &[u8], _format: Format) -> Result<FlagDocument, ParseError> {
    todo!("flags::parse_document")
}
