//! Shared rules (`$evaluators`) and their `{"$ref": "<name>"}` references (spec section 4.4).
//!
//! flagd substitutes references textually in the normalized document, so a reference is
//! replaced wherever it appears (not only in `targeting`), whitespace never matters, and
//! references inside evaluators are not resolved. We do the same on the parsed value.

use serde_json::{Map, Value};

use super::json_text::go_json_text;
use super::ParseError;

/// The named shared rules of one document.
pub(crate) struct Evaluators {
    rules: Map<String, Value>,
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
        Ok(Evaluators { rules })
    }

    /// Whether there is nothing to inline.
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Replaces every `{"$ref": "<known name>"}` object inside `value` by that evaluator.
    /// Unknown names stay (the rule then fails to compile and evaluates to PARSE_ERROR).
    pub(crate) fn inline(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(rule) = self.referenced(map) {
                    *value = rule.clone();
                    return;
                }
                for child in map.values_mut() {
                    self.inline(child);
                }
            }
            Value::Array(items) => {
                for child in items {
                    self.inline(child);
                }
            }
            _ => {}
        }
    }

    fn referenced(&self, map: &Map<String, Value>) -> Option<&Value> {
        if map.len() != 1 {
            return None;
        }
        match map.get("$ref")? {
            Value::String(name) => self.rules.get(name),
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
        ev.inline(&mut doc);
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
        ev.inline(&mut doc);
        assert_eq!(doc, original);
    }

    #[test]
    fn does_not_resolve_references_inside_evaluators() {
        let ev = evaluators(json!({"a": {"$ref": "b"}, "b": {"==": [1, 1]}})).unwrap();
        let mut doc = json!({"$ref": "a"});
        ev.inline(&mut doc);
        assert_eq!(doc, json!({"$ref": "b"}));
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
