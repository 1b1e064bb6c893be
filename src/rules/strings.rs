//! flagd's `starts_with` / `ends_with` (spec section 5.6): exactly two string arguments,
//! case-sensitive byte prefix/suffix test; anything else answers null.

use super::interp::{Cx, Scope};
use super::node::Node;
use super::val::{Val, View};
use super::EvalError;

/// Evaluates `starts_with`.
pub(super) fn starts_with<'x, 'a: 'x>(
    args: &'x [Node],
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Val<'x>, EvalError> {
    test(args, scope, cx, |s, p| s.starts_with(p))
}

/// Evaluates `ends_with`.
pub(super) fn ends_with<'x, 'a: 'x>(
    args: &'x [Node],
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Val<'x>, EvalError> {
    test(args, scope, cx, |s, p| s.ends_with(p))
}

fn test<'x, 'a: 'x>(
    args: &'x [Node],
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
    f: impl Fn(&str, &str) -> bool,
) -> Result<Val<'x>, EvalError> {
    let [subject, affix] = args else {
        // flagd's engine evaluates every argument before the operator sees the count.
        for node in args {
            node.eval(scope, cx)?;
        }
        return Ok(Val::Null);
    };
    let subject = subject.eval(scope, cx)?;
    let affix = affix.eval(scope, cx)?;
    Ok(match (subject.view(), affix.view()) {
        (View::Str(s), View::Str(p)) => Val::Bool(f(s, p)),
        _ => Val::Null,
    })
}
