//! flagd's `sem_ver` operator (spec section 5.5): `[version, op, version]` → bool, or null on
//! bad input. Versions follow Go `golang.org/x/mod/semver` validity after flagd's
//! normalisation (numbers formatted as text, an optional leading `v`/`V`); precedence comes
//! from the `semver` crate (build metadata ignored).

use std::cmp::Ordering;

use semver::{BuildMetadata, Prerelease, Version};

use super::interp::{arg, Cx, Scope};
use super::node::Node;
use super::val::{push_number, Val, View};
use super::EvalError;

/// Evaluates `sem_ver`.
pub(super) fn eval<'x, 'a: 'x>(
    args: &'x [Node],
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Val<'x>, EvalError> {
    if args.len() != 3 {
        // flagd's engine evaluates every argument before the operator sees the count.
        for node in args {
            node.eval(scope, cx)?;
        }
        return Ok(Val::Null);
    }
    let left = arg(args, 0, scope, cx)?.expect("three args");
    let op = arg(args, 1, scope, cx)?.expect("three args");
    let right = arg(args, 2, scope, cx)?.expect("three args");
    let (Some(a), Some(b)) = (version_of(left.view()), version_of(right.view())) else {
        return Ok(Val::Null);
    };
    let View::Str(op) = op.view() else {
        return Ok(Val::Null);
    };
    let ord = a.cmp_precedence(&b);
    let r = match op {
        "=" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        // Same major and minor.
        "~" => a.major == b.major && a.minor == b.minor,
        // Same major only (not npm caret semantics).
        "^" => a.major == b.major,
        _ => return Ok(Val::Null),
    };
    Ok(Val::Bool(r))
}

/// A version from a string or a number (`1.2` → "1.2", `2` → "2").
fn version_of(v: View<'_>) -> Option<Version> {
    match v {
        View::Str(s) => parse(s),
        View::Num(n) => {
            let mut s = String::new();
            push_number(&mut s, n);
            parse(&s)
        }
        _ => None,
    }
}

/// Parses `[v|V]MAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]]` with Go x/mod/semver rules.
pub(super) fn parse(s: &str) -> Option<Version> {
    let s = s
        .strip_prefix('v')
        .or_else(|| s.strip_prefix('V'))
        .unwrap_or(s);
    let (major, rest) = number(s)?;
    if rest.is_empty() {
        return Some(Version::new(major, 0, 0));
    }
    let (minor, rest) = number(rest.strip_prefix('.')?)?;
    if rest.is_empty() {
        return Some(Version::new(major, minor, 0));
    }
    let (patch, rest) = number(rest.strip_prefix('.')?)?;
    let (pre, rest) = match rest.strip_prefix('-') {
        Some(r) => {
            let end = r.find('+').unwrap_or(r.len());
            let pre = &r[..end];
            if !identifiers_ok(pre, true) {
                return None;
            }
            (pre, &r[end..])
        }
        None => ("", rest),
    };
    if let Some(build) = rest.strip_prefix('+') {
        if !identifiers_ok(build, false) {
            return None;
        }
    } else if !rest.is_empty() {
        return None;
    }
    let mut v = Version::new(major, minor, patch);
    v.pre = Prerelease::new(pre).ok()?;
    v.build = BuildMetadata::EMPTY;
    Some(v)
}

/// A decimal number without leading zeros, and the rest of the input.
fn number(s: &str) -> Option<(u64, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let digits = &s[..end];
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    // Go accepts arbitrarily long numbers; beyond u64 we answer null.
    Some((digits.parse().ok()?, &s[end..]))
}

/// Dot-separated, non-empty `[0-9A-Za-z-]` identifiers; in prereleases, numeric identifiers
/// may not have leading zeros.
fn identifiers_ok(s: &str, prerelease: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(prerelease
                && id.len() > 1
                && id.starts_with('0')
                && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_forms() {
        assert_eq!(parse("1").unwrap(), Version::new(1, 0, 0));
        assert_eq!(parse("v1").unwrap(), Version::new(1, 0, 0));
        assert_eq!(parse("V1.2").unwrap(), Version::new(1, 2, 0));
        assert_eq!(parse("1.2.3").unwrap(), Version::new(1, 2, 3));
        assert_eq!(parse("0.0.0").unwrap(), Version::new(0, 0, 0));
        let v = parse("1.2.3-alpha.1+build.007").unwrap();
        assert_eq!(v.pre.as_str(), "alpha.1");
        assert!(parse("1.0.0-0A.is.legal").is_some());
        assert!(parse("1.0.0-x-y-z.--").is_some());
    }

    #[test]
    fn invalid_forms() {
        for bad in [
            "",
            "v",
            "vv1",
            "1.",
            "1.2.",
            "1..2",
            "01",
            "1.02",
            "1.2.03",
            "1.2.3.4",
            "2.0.0.0",
            "1.2-pre",
            "1-pre",
            "1.2+build",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3-a_b",
            " 1.2.3",
            "1.2.3 ",
            "not-a-version",
            "a.b.c",
            "-1.0.0",
            "99999999999999999999999.0.0",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} should be invalid");
        }
        // Leading zeros are fine in build metadata.
        assert!(parse("1.2.3+01").is_some());
    }
}
