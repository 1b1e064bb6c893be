//! flagd's `fractional` operator: deterministic weighted bucketing (spec section 5.4).
//!
//! v2 (flagd ≥ 0.15): MurmurHash3 x86_32 (seed 0) over the bucketing string, or over flag key
//! followed by targeting key; `bucket = (hash * total) >> 32`. v3 (ADR
//! "fractional-non-string-rand-units"): the same, but the hash input is the deterministic CBOR
//! encoding of the bucketing value (any JSON type but null/array), or of the array
//! `[flagKey, targetingKey]`.
//!
//! Distributions are walked twice (once to total the weights, once to pick the variant) so the
//! operator needs no allocation; evaluation is pure, so re-evaluating a computed variant or
//! weight gives the same answer.

use serde_json::Value;

use super::cbor;
use super::interp::{Cx, Scope};
use super::murmur3::{murmur3_32, Murmur3};
use super::node::Node;
use super::val::{Val, View};
use super::{EvalError, FractionalVersion};

/// Largest accepted weight and weight sum (Go `math.MaxInt32`).
const MAX_WEIGHT: u64 = i32::MAX as u64;

type R<'x> = Result<Val<'x>, EvalError>;

/// A distribution `[variant, weight?]`, as written in the rule or as computed.
enum Dist<'x> {
    /// An array written with expressions in it: evaluate element by element.
    Nodes(&'x [Node]),
    /// An array literal in the rule or an array borrowed from the context.
    Values(&'x [Value]),
    /// A computed array.
    Owned(Vec<Value>),
}

impl<'x> Dist<'x> {
    fn elem<'a: 'x>(
        &self,
        i: usize,
        scope: Scope<'x>,
        cx: &mut Cx<'a>,
    ) -> Result<Option<Val<'x>>, EvalError> {
        Ok(match self {
            Dist::Nodes(n) => match n.get(i) {
                Some(node) => Some(node.eval(scope, cx)?),
                None => None,
            },
            Dist::Values(v) => v.get(i).map(Val::Ref),
            Dist::Owned(v) => v.get(i).map(|x| Val::Own(x.clone())),
        })
    }
}

/// Views a node as a distribution; `None` if it is not an array.
fn dist<'x, 'a: 'x>(
    node: &'x Node,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Dist<'x>>, EvalError> {
    Ok(match node {
        Node::Arr(items) => Some(Dist::Nodes(items)),
        Node::Lit(Value::Array(items)) => Some(Dist::Values(items)),
        other => match other.eval(scope, cx)? {
            Val::Ref(Value::Array(items)) => Some(Dist::Values(items)),
            Val::Own(Value::Array(items)) => Some(Dist::Owned(items)),
            _ => None,
        },
    })
}

/// Whether a node is an array as written (a distribution, not a bucketing expression).
fn is_array_node(node: &Node) -> bool {
    matches!(node, Node::Arr(_) | Node::Lit(Value::Array(_)))
}

/// A distribution's weight: absent or null → 1; whole numbers only; above `i32::MAX` refused;
/// negative clamped to 0. `None` means the whole operator answers null.
fn weight(v: Option<Val<'_>>) -> Option<u64> {
    match v {
        None | Some(Val::Null) => Some(1),
        Some(Val::Ref(v)) => weight_value(v),
        Some(Val::Own(v)) => weight_value(&v),
        Some(Val::Num(n)) => weight_f64(n),
        Some(_) => None,
    }
}

/// [`weight`] of a JSON value, reading integers without float conversion.
fn weight_value(v: &Value) -> Option<u64> {
    match v {
        Value::Null => Some(1),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                (u <= MAX_WEIGHT).then_some(u)
            } else if n.is_i64() {
                // A negative integer.
                Some(0)
            } else {
                weight_f64(n.as_f64()?)
            }
        }
        _ => None,
    }
}

fn weight_f64(n: f64) -> Option<u64> {
    // Go: int64(w) must round-trip (NaN and fractions fail); no libm call for `fract`.
    if n > MAX_WEIGHT as f64 || (n as i64) as f64 != n {
        None
    } else if n < 0.0 {
        Some(0)
    } else {
        Some(n as u64)
    }
}

/// Whether a computed variant may be returned (string, boolean, number or null).
fn variant_ok(v: &Val<'_>) -> bool {
    matches!(
        v.view(),
        View::Str(_) | View::Bool(_) | View::Num(_) | View::Null
    )
}

/// Where the hash input comes from.
enum Input<'x> {
    /// The flag key and the context's `targetingKey`.
    TargetingKey,
    /// An evaluated bucketing value (v2: always a string).
    Value(Val<'x>),
}

/// Evaluates `fractional`.
pub(super) fn eval<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let Some(first) = args.first() else {
        return Ok(Val::Null);
    };
    // The first element is either the bucketing expression or already a distribution. When
    // it is a computed array (e.g. a `var`), it is kept as the first distribution.
    let mut first_dist: Option<Dist<'x>> = None;
    let (input, rest) = if is_array_node(first) {
        (Input::TargetingKey, args)
    } else {
        let v = first.eval(scope, cx)?;
        match (cx.env.fractional, v.view()) {
            (_, View::Str(_)) => (Input::Value(v), &args[1..]),
            (FractionalVersion::V2, View::Null) => (Input::TargetingKey, &args[1..]),
            (FractionalVersion::V3, View::Null) => return Ok(Val::Null),
            (_, View::Arr(_)) => {
                first_dist = match v {
                    Val::Ref(Value::Array(items)) => Some(Dist::Values(items)),
                    Val::Own(Value::Array(items)) => Some(Dist::Owned(items)),
                    _ => None,
                };
                (Input::TargetingKey, &args[1..])
            }
            // v2 keeps any other value as a distribution, which is then not an array.
            (FractionalVersion::V2, _) => return Ok(Val::Null),
            (FractionalVersion::V3, _) => (Input::Value(v), &args[1..]),
        }
    };

    // Pass 1: validate every distribution and total the weights.
    let mut total: u64 = 0;
    let mut count = 0usize;
    if let Some(d) = &first_dist {
        let Some(w) = check_dist(d, scope, cx)? else {
            return Ok(Val::Null);
        };
        total += w;
        count += 1;
    }
    for node in rest {
        let Some(d) = dist(node, scope, cx)? else {
            return Ok(Val::Null);
        };
        let Some(w) = check_dist(&d, scope, cx)? else {
            return Ok(Val::Null);
        };
        total += w;
        count += 1;
        if total > MAX_WEIGHT {
            return Ok(Val::Null);
        }
    }
    if count == 0 || total == 0 || total > MAX_WEIGHT {
        return Ok(Val::Null);
    }

    let Some(hash) = hash(&input, cx) else {
        return Ok(Val::Null);
    };
    let bucket = (u64::from(hash) * total) >> 32;

    // Pass 2: find the distribution holding the bucket and evaluate its variant.
    let mut end: u64 = 0;
    if let Some(d) = first_dist {
        end += check_dist(&d, scope, cx)?.unwrap_or(0);
        if bucket < end {
            return Ok(d.elem(0, scope, cx)?.unwrap_or(Val::Null));
        }
    }
    for node in rest {
        let Some(d) = dist(node, scope, cx)? else {
            return Ok(Val::Null);
        };
        end += match &d {
            Dist::Values(items) => items.get(1).map_or(Some(1), weight_value),
            _ => weight(d.elem(1, scope, cx)?),
        }
        .unwrap_or(0);
        if bucket < end {
            return Ok(d.elem(0, scope, cx)?.unwrap_or(Val::Null));
        }
    }
    // Unreachable: bucket < total and the weights sum to total.
    Ok(Val::Null)
}

/// Checks one distribution; returns its weight, or `None` if the operator must answer null.
fn check_dist<'x, 'a: 'x>(
    d: &Dist<'x>,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<u64>, EvalError> {
    match d {
        // Literal distributions (the usual case) are checked without building values.
        Dist::Values(items) => Ok(check_values(items)),
        Dist::Owned(items) => Ok(check_values(items)),
        Dist::Nodes(items) => {
            let Some(first) = items.first() else {
                return Ok(None);
            };
            if !variant_ok(&first.eval(scope, cx)?) {
                return Ok(None);
            }
            Ok(weight(d.elem(1, scope, cx)?))
        }
    }
}

fn check_values(items: &[Value]) -> Option<u64> {
    match items.first()? {
        Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null => {}
        _ => return None,
    }
    items.get(1).map_or(Some(1), weight_value)
}

/// The context's targeting key, if it is a non-empty string.
fn targeting_key<'a>(cx: &Cx<'a>) -> Option<&'a str> {
    match cx.env.context.get("targetingKey") {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The 32-bit hash of the bucketing input; `None` when there is no usable input.
fn hash(input: &Input<'_>, cx: &Cx<'_>) -> Option<u32> {
    let flag_key = cx.env.flag_key;
    match cx.env.fractional {
        FractionalVersion::V2 => match input {
            Input::Value(v) => match v.view() {
                View::Str(s) => Some(murmur3_32(s.as_bytes(), 0)),
                _ => None,
            },
            Input::TargetingKey => {
                let tk = targeting_key(cx)?;
                let mut h = Murmur3::new(0);
                h.write(flag_key.as_bytes());
                h.write(tk.as_bytes());
                Some(h.finish())
            }
        },
        FractionalVersion::V3 => {
            let mut h = Murmur3::new(0);
            match input {
                Input::TargetingKey => {
                    let tk = targeting_key(cx)?;
                    cbor::head(&mut h, 4, 2);
                    cbor::text(&mut h, flag_key);
                    cbor::text(&mut h, tk);
                }
                Input::Value(v) => {
                    let ok = match v.view() {
                        View::Str(s) => {
                            cbor::text(&mut h, s);
                            true
                        }
                        View::Num(n) => match v {
                            Val::Ref(value) => cbor::value(&mut h, value),
                            _ => {
                                cbor::number_f64(&mut h, n);
                                true
                            }
                        },
                        View::Bool(b) => {
                            cbor::Sink::put(&mut h, &[if b { 0xf5 } else { 0xf4 }]);
                            true
                        }
                        View::Obj(map) => cbor::object(&mut h, map),
                        View::Null | View::Arr(_) => false,
                    };
                    if !ok {
                        return None;
                    }
                }
            }
            Some(h.finish())
        }
    }
}
