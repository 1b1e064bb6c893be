//! How options are declared: once, as a field of an all-optional struct that clap
//! (`#[command(flatten)]`, flag and `FLAGD_*` variable), serde (the `--config` file key, the
//! field name in kebab-case) and the layering ([`Layer`]) share.
//!
//! [`layered!`] wraps such a struct and derives [`Layer::over`] from its field list, so
//! adding an option is adding one field. [`lenient`] holds the config-file value readers
//! (viper's leniency: numbers and booleans may be strings, lists may be one comma-separated
//! string); [`duration`] is Go's duration grammar.

pub(crate) mod duration;
pub(crate) mod lenient;

/// One layer of configuration that can lie over a lower one (flag > environment > file).
pub trait Layer {
    /// This layer with every value it lacks taken from `lower`.
    fn over(self, lower: Self) -> Self;
}

impl<T> Layer for Option<T> {
    fn over(self, lower: Self) -> Self {
        self.or(lower)
    }
}

/// Declares an all-optional options struct and its [`Layer`] implementation (each field
/// layered with its own `Layer`: `Option`s take the upper value, flattened groups recurse).
macro_rules! layered {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field : $ty ),*
        }

        impl $crate::options::Layer for $name {
            fn over(self, lower: Self) -> Self {
                $name {
                    $( $field: $crate::options::Layer::over(self.$field, lower.$field) ),*
                }
            }
        }
    };
}
pub(crate) use layered;

/// Reads `value` (a config document's map) into `T`; on failure, names the first key whose
/// value alone fails, so every message says which option is wrong.
pub(crate) fn from_map<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, (String, String)> {
    match serde_json::from_value::<T>(value.clone()) {
        Ok(parsed) => Ok(parsed),
        Err(error) => {
            if let serde_json::Value::Object(map) = value {
                for (key, item) in map {
                    let single = serde_json::Value::Object(
                        [(key.clone(), item.clone())].into_iter().collect(),
                    );
                    if let Err(error) = serde_json::from_value::<T>(single) {
                        return Err((key.clone(), error.to_string()));
                    }
                }
            }
            Err(("config".to_owned(), error.to_string()))
        }
    }
}
