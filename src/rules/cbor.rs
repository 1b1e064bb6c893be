//! Deterministic CBOR (RFC 8949 section 4.2.1, "core deterministic encoding") of JSON values,
//! as the `fractional` v3 bucketing hashes them (flagd ADR "fractional-non-string-rand-units").
//!
//! Rules: shortest integer heads; whole numbers in [-2^63, 2^64-1] (including -0.0) are
//! encoded as integers; other numbers as the shortest float (f16, f32, f64) that holds the value
//! exactly ("preferred serialization"); map keys sorted by their encoded bytes, which for string
//! keys is shorter-first, then bytewise. Output goes to a [`Sink`] so it can be hashed without
//! building a buffer.

use serde_json::{Map, Value};

use super::murmur3::Murmur3;

/// Deepest value we encode; deeper values make `fractional` answer `null`.
const MAX_DEPTH: usize = 256;

/// Where encoded bytes go.
pub(crate) trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Murmur3 {
    fn put(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes a CBOR head: major type plus argument in its shortest form.
pub(crate) fn head(sink: &mut impl Sink, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        sink.put(&[m | arg as u8]);
    } else if arg <= 0xff {
        sink.put(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        let b = (arg as u16).to_be_bytes();
        sink.put(&[m | 25, b[0], b[1]]);
    } else if arg <= 0xffff_ffff {
        let b = (arg as u32).to_be_bytes();
        sink.put(&[m | 26, b[0], b[1], b[2], b[3]]);
    } else {
        let b = arg.to_be_bytes();
        sink.put(&[m | 27, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
}

/// Writes a text string.
pub(crate) fn text(sink: &mut impl Sink, s: &str) {
    head(sink, 3, s.len() as u64);
    sink.put(s.as_bytes());
}

/// Writes an unsigned (major 0) or negative (major 1) integer.
fn int(sink: &mut impl Sink, negative: bool, magnitude_minus_one_or_value: u64) {
    head(
        sink,
        if negative { 1 } else { 0 },
        magnitude_minus_one_or_value,
    );
}

/// 2^64 as f64 (the first whole float that does not fit in u64).
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
/// -2^63 as f64.
const MINUS_TWO_POW_63: f64 = -9_223_372_036_854_775_808.0;

/// Writes a number given as f64, normalizing whole values to integers.
pub(crate) fn number_f64(sink: &mut impl Sink, f: f64) {
    if f.fract() == 0.0 && (MINUS_TWO_POW_63..TWO_POW_64).contains(&f) {
        if f >= 0.0 {
            // Also maps -0.0 to unsigned 0.
            int(sink, false, f as u64);
        } else {
            let n = f as i64;
            int(sink, true, (-1 - n) as u64);
        }
        return;
    }
    float(sink, f);
}

/// Writes a JSON number, keeping integer precision for values serde parsed as integers.
fn number(sink: &mut impl Sink, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        int(sink, false, u);
    } else if let Some(i) = n.as_i64() {
        // as_u64 failed, so i < 0.
        int(sink, true, (-1 - i) as u64);
    } else {
        number_f64(sink, n.as_f64().unwrap_or(f64::NAN));
    }
}

/// Writes a float in its shortest exact width.
fn float(sink: &mut impl Sink, f: f64) {
    if let Some(h) = f16_exact(f) {
        let b = h.to_be_bytes();
        sink.put(&[0xf9, b[0], b[1]]);
    } else if f64::from(f as f32) == f {
        let b = (f as f32).to_bits().to_be_bytes();
        sink.put(&[0xfa, b[0], b[1], b[2], b[3]]);
    } else {
        let b = f.to_bits().to_be_bytes();
        sink.put(&[0xfb, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
}

/// The IEEE 754 half-precision bits for `f` if it converts without loss.
pub(crate) fn f16_exact(f: f64) -> Option<u16> {
    if f.is_nan() {
        return Some(0x7e00);
    }
    let sign: u16 = if f.is_sign_negative() { 0x8000 } else { 0 };
    let a = f.abs();
    if a == 0.0 {
        return Some(sign);
    }
    if a.is_infinite() {
        return Some(sign | 0x7c00);
    }
    let bits = a.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // f64 subnormals are far below the smallest half.
        return None;
    }
    let frac = bits & ((1u64 << 52) - 1);
    let e = biased - 1023;
    if e > 15 {
        None
    } else if e >= -14 {
        // Normal half: 10 mantissa bits, the other 42 must be zero.
        if frac & ((1u64 << 42) - 1) != 0 {
            return None;
        }
        Some(sign | (((e + 15) as u16) << 10) | (frac >> 42) as u16)
    } else if e >= -24 {
        // Subnormal half: a multiple of 2^-24.
        let full = (1u64 << 52) | frac;
        let shift = (52 - (e + 24)) as u32;
        if full & ((1u64 << shift) - 1) != 0 {
            return None;
        }
        Some(sign | (full >> shift) as u16)
    } else {
        None
    }
}

/// Writes any JSON value; `false` if it is nested deeper than we accept.
pub(crate) fn value(sink: &mut impl Sink, v: &Value) -> bool {
    value_at(sink, v, 0)
}

fn value_at(sink: &mut impl Sink, v: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match v {
        Value::Null => sink.put(&[0xf6]),
        Value::Bool(false) => sink.put(&[0xf4]),
        Value::Bool(true) => sink.put(&[0xf5]),
        Value::Number(n) => number(sink, n),
        Value::String(s) => text(sink, s),
        Value::Array(items) => {
            head(sink, 4, items.len() as u64);
            for item in items {
                if !value_at(sink, item, depth + 1) {
                    return false;
                }
            }
        }
        Value::Object(map) => return object_at(sink, map, depth),
    }
    true
}

/// Writes a map with keys in deterministic order.
pub(crate) fn object(sink: &mut impl Sink, map: &Map<String, Value>) -> bool {
    object_at(sink, map, 0)
}

fn object_at(sink: &mut impl Sink, map: &Map<String, Value>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    head(sink, 5, map.len() as u64);
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // Encoded text keys compare by length first (the head encodes it), then bytewise.
    entries.sort_unstable_by(|a, b| {
        a.0.len()
            .cmp(&b.0.len())
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    for (k, v) in entries {
        text(sink, k);
        if !value_at(sink, v, depth + 1) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(value(&mut out, v));
        out
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rfc8949_appendix_a_examples() {
        // Integers and simple values (RFC 8949 Appendix A).
        let cases: &[(Value, &str)] = &[
            (json!(0), "00"),
            (json!(1), "01"),
            (json!(10), "0a"),
            (json!(23), "17"),
            (json!(24), "1818"),
            (json!(25), "1819"),
            (json!(100), "1864"),
            (json!(1000), "1903e8"),
            (json!(1000000), "1a000f4240"),
            (json!(1000000000000u64), "1b000000e8d4a51000"),
            (json!(18446744073709551615u64), "1bffffffffffffffff"),
            (json!(-1), "20"),
            (json!(-10), "29"),
            (json!(-100), "3863"),
            (json!(-1000), "3903e7"),
            (json!(1.1), "fb3ff199999999999a"),
            (json!(1.5), "f93e00"),
            (json!(65504.5), "fa477fe080"),
            (json!(100000.5), "fa47c35040"),
            (json!(3.4028234663852886e38), "fa7f7fffff"),
            (json!(1.0e300), "fb7e37e43c8800759c"),
            (json!(5.960464477539063e-8), "f90001"),
            (json!(0.00006103515625), "f90400"),
            (json!(-4.1), "fbc010666666666666"),
            (json!(false), "f4"),
            (json!(true), "f5"),
            (json!(null), "f6"),
            (json!(""), "60"),
            (json!("a"), "6161"),
            (json!("IETF"), "6449455446"),
            (json!("\u{00fc}"), "62c3bc"),
            (json!("\u{6c34}"), "63e6b0b4"),
            (json!([]), "80"),
            (json!([1, 2, 3]), "83010203"),
            (json!([1, [2, 3], [4, 5]]), "8301820203820405"),
            (json!({}), "a0"),
            (json!({"a": 1, "b": [2, 3]}), "a26161016162820203"),
            (json!(["a", {"b": "c"}]), "826161a161626163"),
        ];
        for (v, want) in cases {
            assert_eq!(hex(&enc(v)), *want, "{v}");
        }
    }

    #[test]
    fn whole_floats_become_integers() {
        assert_eq!(enc(&json!(1.0)), enc(&json!(1)));
        assert_eq!(enc(&json!(-2.0)), enc(&json!(-2)));
        assert_eq!(enc(&json!(-0.0)), enc(&json!(0)));
        assert_eq!(
            enc(&json!(9007199254740992.0)),
            enc(&json!(9007199254740992u64))
        );
        // 2^64 does not fit: stays a float (f32 can hold it exactly).
        assert_eq!(hex(&enc(&json!(18446744073709551616.0))), "fa5f800000");
        // -2^63 fits as an integer; below it stays float.
        assert_eq!(
            hex(&enc(&json!(-9223372036854775808.0))),
            "3b7fffffffffffffff"
        );
        assert_eq!(hex(&enc(&json!(1e20))), "fb4415af1d78b58c40");
    }

    #[test]
    fn map_keys_sort_shorter_first_then_bytewise() {
        let a = enc(&json!({"z": 1, "aa": 2}));
        assert_eq!(hex(&a), "a2617a01626161 02".replace(' ', ""));
        assert_eq!(enc(&json!({"b": 2, "a": 1})), enc(&json!({"a": 1, "b": 2})));
    }

    #[test]
    fn half_precision_edges() {
        assert_eq!(f16_exact(65504.0), Some(0x7bff));
        assert_eq!(f16_exact(65505.0), None);
        assert_eq!(f16_exact(-65504.0), Some(0xfbff));
        assert_eq!(f16_exact(2f64.powi(-14)), Some(0x0400));
        assert_eq!(f16_exact(2f64.powi(-24)), Some(0x0001));
        assert_eq!(f16_exact(2f64.powi(-25)), None);
        assert_eq!(f16_exact(3.0 * 2f64.powi(-24)), Some(0x0003));
        assert_eq!(f16_exact(0.1), None);
        assert_eq!(f16_exact(f64::INFINITY), Some(0x7c00));
        assert_eq!(f16_exact(-0.0), Some(0x8000));
    }

    #[test]
    fn too_deep_is_refused() {
        let mut v = json!(1);
        for _ in 0..300 {
            v = json!([v]);
        }
        let mut out = Vec::new();
        assert!(!value(&mut out, &v));
    }
}
