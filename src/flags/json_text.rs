//! flagd's view of a JSON value as text: what Go's `encoding/json` writes for it.
//!
//! flagd turns a targeting result into a variant name through its JSON text, so the exact
//! text matters: numbers are float64 in Go (`1`, `1.5`, `1e+21`, `1e-7`), object keys are
//! sorted, and strings escape `"`, `\` and control characters. Go's optional HTML escapes
//! (`<`, `>`, `&`, U+2028, U+2029) are deliberately not applied (see docs/deviations.md).

use std::fmt::{self, Write};

use serde_json::Value;

/// A small fixed-capacity string, so formatting a number needs no heap allocation.
pub(crate) struct InlineStr {
    buf: [u8; 48],
    len: usize,
}

impl InlineStr {
    /// An empty buffer.
    pub(crate) const fn new() -> InlineStr {
        InlineStr {
            buf: [0; 48],
            len: 0,
        }
    }

    /// The text written so far.
    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so the prefix is valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl Write for InlineStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a float64 the way Go's JSON encoder does (shortest round-trip digits; exponent
/// form outside `[1e-6, 1e21)`, written `1e+21` / `1e-7`).
pub(crate) fn write_go_float(out: &mut impl Write, f: f64) -> fmt::Result {
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return write!(out, "{f}");
    }
    let mut exp = InlineStr::new();
    write!(exp, "{f:e}")?;
    let text = exp.as_str();
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    match exponent.strip_prefix('-') {
        Some(digits) => write!(out, "{mantissa}e-{digits}"),
        None => write!(out, "{mantissa}e+{exponent:0>2}"),
    }
}

/// Writes a JSON number as Go would after decoding it into a float64.
pub(crate) fn write_go_number(out: &mut impl Write, n: &serde_json::Number) -> fmt::Result {
    write_go_float(out, n.as_f64().unwrap_or(0.0))
}

/// Writes the escaped body of a JSON string (without the surrounding quotes).
pub(crate) fn write_escaped(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Whether a string's JSON body equals the string itself (nothing to escape).
pub(crate) fn needs_no_escape(s: &str) -> bool {
    !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// The compact JSON text Go's encoder produces for `value` (object keys sorted).
pub(crate) fn go_json_text(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // Writing into a String cannot fail.
            let _ = write_go_number(out, n);
        }
        Value::String(s) => {
            out.push('"');
            write_escaped(out, s);
            out.push('"');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                write_escaped(out, key);
                out.push_str("\":");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn float(f: f64) -> String {
        let mut s = String::new();
        write_go_float(&mut s, f).unwrap();
        s
    }

    #[test]
    fn floats_are_written_like_go() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(100.0), "100");
        assert_eq!(float(1e20), "100000000000000000000");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(1.5e300), "1.5e+300");
        assert_eq!(float(0.000001), "0.000001");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(-2.5e-10), "-2.5e-10");
        assert_eq!(float(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(float(5e-324), "5e-324");
    }

    #[test]
    fn inline_buffer_holds_every_float() {
        for f in [
            -1.7976931348623157e308,
            -2.2250738585072014e-308,
            -0.0000012345678901234567,
            -123456789012345678901.0,
        ] {
            let mut buf = InlineStr::new();
            write_go_float(&mut buf, f).unwrap();
            assert_eq!(buf.as_str(), float(f));
        }
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_controls() {
        let mut s = String::new();
        write_escaped(&mut s, "a\"b\\c\nd\u{1}e\u{8}\u{c}<&>");
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001e\\b\\f<&>");
        assert!(needs_no_escape("plain <&> text é"));
        assert!(!needs_no_escape("tab\there"));
    }

    #[test]
    fn values_are_compact_with_sorted_keys() {
        let v = json!({"b": [1, 2.5, true, null], "a": {"y": "q\"", "x": 1e21}});
        assert_eq!(
            go_json_text(&v),
            r#"{"a":{"x":1e+21,"y":"q\""},"b":[1,2.5,true,null]}"#
        );
    }
}
