//! Shared rules (`$evaluators`) and their `{"$ref": "<name>"}` references (spec section 4.4).
//!
//! flagd substitutes references textually in the normalized document, so a reference is
//! replaced wherever it appears (not only in `targeting`), whitespace never matters, and
//! references inside evaluators are not resolved. We do the same on the parsed value.

use std::cell::Cell;

use serde_json::{Map, Value};

use super::json_text::go_json_text;
use super::ParseError;

/// The most JSON values all `$ref` substitutions of one document may add. Each substitution
/// clones its evaluator, so without a budget a small document (one large evaluator, many
/// short references) expands to gigabytes; the charge is taken before the clone.
pub(crate) const MAX_INLINED_VALUES: usize = 1_000_000;

/// The named shared rules of one document, each with its size in JSON values.
pub(crate) struct Evaluators {
    rules: Map<String, Value>,
    sizes: std::collections::HashMap<String, usize>,
    budget: Cell<usize>,
}

/// The number of JSON values in `value` (containers included).
fn size(value: &Value) -> usize {
    1 + match value {
        Value::Object(map) => map.values().map(size).sum(),
        Value::Array(items) => items.iter().map(size).sum(),
        _ => 0,
    }
}

impl Evaluators {
    /// Validates a document's `$evaluators` object; flagd rejects the whole document when an
    /// evaluator's JSON text is shorter than 3 characters (e.g. `{}`).
    pub(crate) fn new(rules: Map<String, Value>) -> Result<Evaluators, ParseError> {
        for (name, rule) in &rules {
            let text = go_json_text(rule);
            if text.len() < 3 {
                return Err(ParseError::InvalidEvaluator {
                    name: name.clone(),
                    message: format!("empty evaluator `{text}`"),
                });
            }
        }
        let sizes = rules.iter().map(|(k, v)| (k.clone(), size(v))).collect();
        Ok(Evaluators {
            rules,
            sizes,
            budget: Cell::new(MAX_INLINED_VALUES),
        })
    }

    /// Whether there is nothing to inline.
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Replaces every `{"$ref": "<known name>"}` object inside `value` by that evaluator.
    /// Unknown names stay (the rule then fails to compile and evaluates to PARSE_ERROR).
    /// Fails once the document's substitutions exceed [`MAX_INLINED_VALUES`].
    pub(crate) fn inline(&self, value: &mut Value) -> Result<(), ParseError> {
        match value {
            Value::Object(map) => {
                if let Some((name, rule)) = self.referenced(map) {
                    self.charge(name)?;
                    *value = rule.clone();
                    return Ok(());
                }
                for child in map.values_mut() {
                    self.inline(child)?;
                }
            }
            Value::Array(items) => {
                for child in items {
                    self.inline(child)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn charge(&self, name: &str) -> Result<(), ParseError> {
        let cost = self.sizes.get(name).copied().unwrap_or(1);
        match self.budget.get().checked_sub(cost) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(ParseError::InvalidEvaluator {
                name: name.to_owned(),
                message: format!(
                    "`$ref` substitutions expand the document beyond {MAX_INLINED_VALUES} values"
                ),
            }),
        }
    }

    fn referenced<'a>(&'a self, map: &Map<String, Value>) -> Option<(&'a str, &'a Value)> {
        if map.len() != 1 {
            return None;
        }
        match map.get("$ref")? {
            Value::String(name) => self.rules.get_key_value(name).map(|(k, v)| (k.as_str(), v)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn evaluators(v: Value) -> Result<Evaluators, ParseError> {
        match v {
            Value::Object(map) => Evaluators::new(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn inlines_references_anywhere() {
        let ev = evaluators(json!({"is_x": {"==": [1, 1]}})).unwrap();
        let mut doc = json!({"if": [{"$ref": "is_x"}, "a", "b"], "meta": [{"$ref": "is_x"}]});
        ev.inline(&mut doc).unwrap();
        assert_eq!(
            doc,
            json!({"if": [{"==": [1, 1]}, "a", "b"], "meta": [{"==": [1, 1]}]})
        );
    }

    #[test]
    fn keeps_unknown_and_non_exact_references() {
        let ev = evaluators(json!({"is_x": {"==": [1, 1]}})).unwrap();
        let original = json!([{"$ref": "nope"}, {"$ref": "is_x", "other": 1}, {"$ref": 5}]);
        let mut doc = original.clone();
        ev.inline(&mut doc).unwrap();
        assert_eq!(doc, original);
    }

    #[test]
    fn does_not_resolve_references_inside_evaluators() {
        let ev = evaluators(json!({"a": {"$ref": "b"}, "b": {"==": [1, 1]}})).unwrap();
        let mut doc = json!({"$ref": "a"});
        ev.inline(&mut doc).unwrap();
        assert_eq!(doc, json!({"$ref": "b"}));
    }

    #[test]
    fn expansion_is_charged_before_cloning() {
        // 10,001 values per reference, 200 references: about 2 million values inlined.
        let big: Vec<Value> = (0..10_000).map(Value::from).collect();
        let ev = evaluators(json!({ "big": big })).unwrap();
        let mut doc = Value::Array(vec![json!({"$ref": "big"}); 200]);
        let err = ev.inline(&mut doc).unwrap_err();
        assert!(err.to_string().contains("beyond 1000000 values"), "{err}");
        // Under the budget the same evaluator inlines.
        let ev = evaluators(json!({ "big": (0..10_000).collect::<Vec<i32>>() })).unwrap();
        let mut doc = Value::Array(vec![json!({"$ref": "big"}); 99]);
        ev.inline(&mut doc).unwrap();
    }

    #[test]
    fn rejects_empty_evaluators() {
        for empty in [json!({}), json!([]), json!(""), json!(7)] {
            let err = evaluators(json!({ "e": empty })).err().unwrap();
            assert!(matches!(err, ParseError::InvalidEvaluator { ref name, .. } if name == "e"));
        }
        assert!(evaluators(json!({"e": "ab"})).is_ok());
        assert!(evaluators(json!({"e": null})).is_ok());
    }
}
