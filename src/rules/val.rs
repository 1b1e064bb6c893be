//! Intermediate values during evaluation and the coercions of the Go JSONLogic engine flagd
//! uses (diegoholiveira/jsonlogic v3): truthiness, number conversion, loose and strict
//! equality, ordering and string conversion.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use super::EvalError;

pub(super) static NULL: Value = Value::Null;
pub(super) static TRUE: Value = Value::Bool(true);
pub(super) static FALSE: Value = Value::Bool(false);

/// A value produced while evaluating: borrowed from the rule or the context whenever possible.
///
/// `repr(u64)` keeps the tag apart from an 8-byte-aligned payload: with the default layout
/// the compiler packs the tag into `Value`'s niche and small payloads at odd offsets, and
/// moving `Result<Option<Val>>` between stack slots then stalls store-to-load forwarding
/// (measured ~1.4x slower on the whole evaluation).
#[derive(Debug, Clone)]
#[repr(u64)]
pub(super) enum Val<'x> {
    /// JSON null.
    Null,
    /// A computed boolean.
    Bool(bool),
    /// A computed number (may be non-finite, e.g. after a division by zero).
    Num(f64),
    /// A borrowed string that is not inside a `Value` (e.g. the flag key).
    Str(&'x str),
    /// A value borrowed from the rule or the context.
    Ref(&'x Value),
    /// A computed value.
    Own(Value),
}

/// A borrowed view of a [`Val`] by JSON kind (`repr(u64)` for the same reason as [`Val`]).
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(super) enum View<'v> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'v str),
    Arr(&'v [Value]),
    Obj(&'v Map<String, Value>),
}

impl<'v> View<'v> {
    /// Views a JSON value.
    #[inline]
    pub(super) fn of(v: &'v Value) -> View<'v> {
        match v {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Num(num_f64(n)),
            Value::String(s) => View::Str(s),
            Value::Array(a) => View::Arr(a),
            Value::Object(o) => View::Obj(o),
        }
    }
}

/// A JSON number as f64 (flagd compares all numbers as float64).
#[inline]
pub(super) fn num_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

impl<'x> Val<'x> {
    /// Views this value by kind.
    #[inline]
    pub(super) fn view(&self) -> View<'_> {
        match self {
            Val::Null => View::Null,
            Val::Bool(b) => View::Bool(*b),
            Val::Num(n) => View::Num(*n),
            Val::Str(s) => View::Str(s),
            Val::Ref(v) => View::of(v),
            Val::Own(v) => View::of(v),
        }
    }

    /// Whether this is JSON null.
    #[inline]
    pub(super) fn is_null(&self) -> bool {
        matches!(self.view(), View::Null)
    }

    /// JSONLogic truthiness.
    #[inline]
    pub(super) fn truthy(&self) -> bool {
        truthy(self.view())
    }

    /// Converts into a JSON value (cloning borrowed data).
    pub(super) fn into_value(self) -> Result<Value, EvalError> {
        Ok(match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Num(n) => num_value(n)?,
            Val::Str(s) => Value::String(s.to_owned()),
            Val::Ref(v) => v.clone(),
            Val::Own(v) => v,
        })
    }

    /// Converts into the engine's public result type, borrowing where possible.
    pub(super) fn into_cow(self) -> Result<Cow<'x, Value>, EvalError> {
        Ok(match self {
            Val::Null => Cow::Borrowed(&NULL),
            Val::Bool(true) => Cow::Borrowed(&TRUE),
            Val::Bool(false) => Cow::Borrowed(&FALSE),
            Val::Ref(v) => Cow::Borrowed(v),
            other => Cow::Owned(other.into_value()?),
        })
    }
}

/// A computed number as JSON: whole values within 2^53 become integers (so they print as Go
/// prints a whole float64, e.g. `2`), negative zero stays `-0` (Go prints it so, and it names
/// the variant `"-0"`); non-finite numbers cannot be JSON (Go's encoder fails).
pub(super) fn num_value(n: f64) -> Result<Value, EvalError> {
    const SAFE: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= SAFE && !(n == 0.0 && n.is_sign_negative()) {
        return Ok(Value::from(n as i64));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| EvalError(format!("result is not a JSON number: {n}")))
}

/// JSONLogic truthiness as the Go engine implements it: `null`, `false`, `0`, `""`, `[]` are
/// falsy, and (Go quirk, kept for parity with flagd) so is an empty object `{}`. NaN is truthy
/// (Go tests `n != 0`).
#[inline]
pub(super) fn truthy(v: View<'_>) -> bool {
    match v {
        View::Null => false,
        View::Bool(b) => b,
        View::Num(n) => n != 0.0,
        View::Str(s) => !s.is_empty(),
        View::Arr(a) => !a.is_empty(),
        View::Obj(o) => !o.is_empty(),
    }
}

/// The outcome of Go's `strconv.ParseFloat(s, 64)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum GoFloat {
    /// Parsed.
    Ok(f64),
    /// Well-formed but out of range: Go returns ±Inf with `ErrRange`.
    Range(f64),
    /// Not a number in Go's syntax (Go returns 0 with `ErrSyntax`).
    Syntax,
}

/// Go's `strconv.ParseFloat(s, 64)`: decimal and hexadecimal (`0x1p4`) floats, `_` between
/// digits (`1_000`), `inf`/`infinity`/`nan` in any case; no surrounding spaces.
pub(super) fn go_parse_float(s: &str) -> GoFloat {
    if let Some(special) = go_special(s) {
        return GoFloat::Ok(special);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        Some(b'+') => {
            i = 1;
            false
        }
        Some(b'-') => {
            i = 1;
            true
        }
        _ => false,
    };
    let hex = b.len() >= i + 2 && b[i] == b'0' && (b[i + 1] | 0x20) == b'x';
    if hex {
        i += 2;
    }
    let digit = |c: u8| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    // Mantissa.
    let mut saw_digit = false;
    let mut saw_dot = false;
    let mut underscores = false;
    while i < b.len() {
        let c = b[i];
        if c == b'_' {
            underscores = true;
        } else if c == b'.' && !saw_dot {
            saw_dot = true;
        } else if digit(c) {
            saw_digit = true;
        } else {
            break;
        }
        i += 1;
    }
    if !saw_digit {
        return GoFloat::Syntax;
    }
    // Exponent: `e` for decimal, `p` (required) for hexadecimal.
    let exp_char = if hex { b'p' } else { b'e' };
    let mut saw_exp = false;
    if i < b.len() && (b[i] | 0x20) == exp_char {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if i >= b.len() || !b[i].is_ascii_digit() {
            return GoFloat::Syntax;
        }
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            underscores |= b[i] == b'_';
            i += 1;
        }
        saw_exp = true;
    }
    if i != b.len() || (hex && !saw_exp) || (underscores && !underscore_ok(s)) {
        return GoFloat::Syntax;
    }
    let clean: std::borrow::Cow<'_, str> = if underscores {
        s.replace('_', "").into()
    } else {
        s.into()
    };
    let n = if hex {
        parse_hex_float(&clean, neg)
    } else {
        match clean.parse::<f64>() {
            Ok(n) => n,
            Err(_) => return GoFloat::Syntax,
        }
    };
    if n.is_infinite() {
        GoFloat::Range(n)
    } else {
        GoFloat::Ok(n)
    }
}

/// Go's `special`: an optional sign and `inf`/`infinity`, or `nan` without a sign.
fn go_special(s: &str) -> Option<f64> {
    let lower = |t: &str| t.to_ascii_lowercase();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest.len() <= 8 && matches!(lower(rest).as_str(), "inf" | "infinity") {
        return Some(sign * f64::INFINITY);
    }
    if rest.len() == s.len() && s.len() == 3 && lower(s) == "nan" {
        return Some(f64::NAN);
    }
    None
}

/// Go's `underscoreOK`: `_` only between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some(b'+' | b'-') = b.first() {
        b = &b[1..];
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = (b[1] | 0x20) == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// The value of a syntactically valid hexadecimal float (without underscores).
fn parse_hex_float(s: &str, neg: bool) -> f64 {
    let body = s.trim_start_matches(['+', '-']);
    let body = &body[2..];
    let (mant, exp) = body
        .split_once(['p', 'P'])
        .expect("checked: hexadecimal floats have an exponent");
    let mut m = 0.0f64;
    let mut e: i64 = exp.parse::<i64>().unwrap_or(if exp.starts_with('-') {
        i64::MIN / 2
    } else {
        i64::MAX / 2
    });
    let mut after_dot = false;
    for c in mant.bytes() {
        if c == b'.' {
            after_dot = true;
            continue;
        }
        let d = f64::from((c as char).to_digit(16).unwrap_or(0));
        m = m * 16.0 + d;
        if after_dot {
            e -= 4;
        }
    }
    // Scale by 2^e in steps so large exponents saturate to infinity or zero.
    let mut n = m;
    while e > 0 && n.is_finite() && n != 0.0 {
        let step = e.min(1000);
        n *= 2f64.powi(step as i32);
        e -= step;
    }
    while e < 0 && n != 0.0 {
        let step = (-e).min(1000);
        n /= 2f64.powi(step as i32);
        e += step;
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Go's `int(f)` on amd64: truncation; NaN and out-of-range values become `i64::MIN`.
pub(super) fn go_int(f: f64) -> i64 {
    // 2^63: the first value above i64's range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if (-LIMIT..LIMIT).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

/// Number conversion used by comparisons (Go `javascript.ToNumber`): null → 0, booleans → 0/1,
/// blank strings → 0, strings Go parses (an out-of-range one such as `"1e400"` is NaN, as the
/// library compares the wrapped error with `ErrRange`), anything else NaN.
#[inline]
pub(super) fn js_number(v: Option<View<'_>>) -> f64 {
    match v {
        None => f64::NAN,
        Some(View::Null) => 0.0,
        Some(View::Bool(b)) => f64::from(u8::from(b)),
        Some(View::Num(n)) => n,
        Some(View::Str(s)) => {
            if s.trim().is_empty() {
                0.0
            } else {
                match go_parse_float(s) {
                    GoFloat::Ok(n) => n,
                    GoFloat::Range(_) | GoFloat::Syntax => f64::NAN,
                }
            }
        }
        Some(View::Arr(_)) | Some(View::Obj(_)) => f64::NAN,
    }
}

/// A string as `typing.ToNumber` reads it: the parsed value, ±Inf when out of range, 0 when
/// it is not a number.
#[inline]
pub(super) fn str_number(s: &str) -> f64 {
    match go_parse_float(s) {
        GoFloat::Ok(n) | GoFloat::Range(n) => n,
        GoFloat::Syntax => 0.0,
    }
}

/// Number conversion used by arithmetic, `max`/`min`, `substr`, `in` ranges (Go
/// `typing.ToNumber`): numbers as is, strings via [`str_number`]; anything else makes the Go
/// engine panic, which flagd reports as PARSE_ERROR, so it is an error here.
#[inline]
pub(super) fn arith_number(v: Option<View<'_>>) -> Result<f64, EvalError> {
    match v {
        Some(View::Num(n)) => Ok(n),
        Some(View::Str(s)) => Ok(str_number(s)),
        other => Err(EvalError(format!(
            "cannot use {} as a number",
            kind_name(other)
        ))),
    }
}

/// A name for error messages.
pub(super) fn kind_name(v: Option<View<'_>>) -> &'static str {
    match v {
        None => "a missing argument",
        Some(View::Null) => "null",
        Some(View::Bool(_)) => "a boolean",
        Some(View::Num(_)) => "a number",
        Some(View::Str(_)) => "a string",
        Some(View::Arr(_)) => "an array",
        Some(View::Obj(_)) => "an object",
    }
}

/// Loose equality `==` (Go `equals`): null equals only null; two strings compare as strings;
/// everything else compares as numbers (so `1 == "1"`, `true == 1`, `"" == 0`, and arrays or
/// objects never equal anything).
pub(super) fn loose_eq(a: Option<View<'_>>, b: Option<View<'_>>) -> bool {
    match (a, b) {
        (Some(View::Null), Some(View::Null)) => true,
        (Some(View::Null), _) | (_, Some(View::Null)) => false,
        (Some(View::Str(x)), Some(View::Str(y))) => x == y,
        _ => js_number(a) == js_number(b),
    }
}

/// Go reflection kind, for strict equality.
fn kind_tag(v: Option<View<'_>>) -> u8 {
    match v {
        None => 0,
        Some(View::Null) => 1,
        Some(View::Bool(_)) => 2,
        Some(View::Num(_)) => 3,
        Some(View::Str(_)) => 4,
        Some(View::Arr(_)) => 5,
        Some(View::Obj(_)) => 6,
    }
}

/// Strict equality `===` (Go `hardEquals`): same kind, then loose equality.
pub(super) fn strict_eq(a: Option<View<'_>>, b: Option<View<'_>>) -> bool {
    kind_tag(a) == kind_tag(b) && loose_eq(a, b)
}

/// `a < b` (Go `less`): two strings compare bytewise, anything else as numbers.
pub(super) fn less(a: Option<View<'_>>, b: Option<View<'_>>) -> bool {
    match (a, b) {
        (Some(View::Str(x)), Some(View::Str(y))) => x < y,
        _ => js_number(a) < js_number(b),
    }
}

/// Appends a number as Go's `strconv.FormatFloat(n, 'f', -1, 64)` prints it (shortest
/// round-trip digits, never an exponent).
pub(super) fn push_number(out: &mut String, n: f64) {
    use std::fmt::Write;
    if n.is_nan() {
        out.push_str("NaN");
    } else if n.is_infinite() {
        out.push_str(if n > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Appends the Go engine's string form of a value (`typing.ToString`): strings as is, numbers
/// via [`push_number`], null as nothing; other kinds make Go panic → error.
pub(super) fn push_go_string(out: &mut String, v: View<'_>) -> Result<(), EvalError> {
    match v {
        View::Str(s) => out.push_str(s),
        View::Num(n) => push_number(out, n),
        View::Null => {}
        other => {
            return Err(EvalError(format!(
                "cannot use {} as a string",
                kind_name(Some(other))
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(x: &Value) -> Option<View<'_>> {
        Some(View::of(x))
    }

    #[test]
    fn truthiness_table() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(View::of(&falsy)), "{falsy} should be falsy");
        }
        for t in [
            json!(true),
            json!(1),
            json!(-1),
            json!("0"),
            json!("false"),
            json!([0]),
            json!({"a": null}),
            json!(" "),
        ] {
            assert!(truthy(View::of(&t)), "{t} should be truthy");
        }
        assert!(truthy(View::Num(f64::NAN)), "Go treats NaN as truthy");
    }

    #[test]
    fn loose_equality_table() {
        let eq = |a: Value, b: Value| loose_eq(v(&a), v(&b));
        assert!(eq(json!(1), json!("1")));
        assert!(eq(json!(1), json!(1.0)));
        assert!(eq(json!(true), json!(1)));
        assert!(eq(json!(false), json!(0)));
        assert!(eq(json!(""), json!(0)));
        assert!(eq(json!(" "), json!(0)));
        assert!(eq(json!("1e2"), json!(100)));
        assert!(eq(json!("true"), json!("true")));
        assert!(!eq(json!(true), json!("true")));
        assert!(eq(json!(null), json!(null)));
        assert!(!eq(json!(null), json!(0)));
        assert!(!eq(json!(null), json!(false)));
        assert!(!eq(json!(0), json!(null)));
        assert!(!eq(json!("a"), json!("b")));
        assert!(!eq(json!([1]), json!(1)));
        assert!(!eq(json!({}), json!({})));
        assert!(!eq(json!("abc"), json!(0)));
        assert!(!loose_eq(None, None));
    }

    #[test]
    fn strict_equality_table() {
        let seq = |a: Value, b: Value| strict_eq(v(&a), v(&b));
        assert!(seq(json!(1), json!(1.0)));
        assert!(!seq(json!(1), json!("1")));
        assert!(!seq(json!(true), json!(1)));
        assert!(seq(json!(true), json!(true)));
        assert!(!seq(json!(true), json!(false)));
        assert!(seq(json!(null), json!(null)));
        assert!(seq(json!("a"), json!("a")));
        assert!(!seq(json!([]), json!([])));
    }

    #[test]
    fn ordering_table() {
        let lt = |a: Value, b: Value| less(v(&a), v(&b));
        assert!(lt(json!(1), json!(2)));
        assert!(lt(json!("1"), json!(2)));
        assert!(lt(json!("a"), json!("b")));
        assert!(
            lt(json!("10"), json!("9")),
            "two strings compare as strings"
        );
        assert!(lt(json!(9), json!("10")), "mixed compare as numbers");
        assert!(lt(json!(null), json!(1)));
        assert!(!lt(json!("a"), json!(1)));
        assert!(!lt(json!(1), json!("a")));
        assert!(lt(json!(false), json!(true)));
        assert!(!less(None, v(&json!(1))));
    }

    #[test]
    fn number_conversions() {
        assert_eq!(js_number(v(&json!(null))), 0.0);
        assert_eq!(js_number(v(&json!(true))), 1.0);
        assert_eq!(js_number(v(&json!("  "))), 0.0);
        assert_eq!(js_number(v(&json!("2.5"))), 2.5);
        assert!(js_number(v(&json!("x"))).is_nan());
        assert!(js_number(v(&json!([]))).is_nan());
        assert_eq!(arith_number(v(&json!("x"))).unwrap(), 0.0);
        assert_eq!(arith_number(v(&json!("7"))).unwrap(), 7.0);
        assert!(arith_number(v(&json!(null))).is_err());
        assert!(arith_number(v(&json!(true))).is_err());
        assert!(arith_number(None).is_err());
    }

    #[test]
    fn go_number_formatting() {
        let f = |n: f64| {
            let mut s = String::new();
            push_number(&mut s, n);
            s
        };
        assert_eq!(f(1.0), "1");
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(1e21), "1000000000000000000000");
        assert_eq!(f(1e-7), "0.0000001");
        assert_eq!(f(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn computed_numbers_become_json() {
        assert_eq!(num_value(2.0).unwrap(), json!(2));
        assert_eq!(num_value(-0.0).unwrap().to_string(), "-0.0");
        assert_eq!(num_value(2.5).unwrap(), json!(2.5));
        assert!(num_value(f64::INFINITY).is_err());
        assert!(num_value(f64::NAN).is_err());
    }
}
