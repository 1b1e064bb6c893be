//! The evaluator: walks the compiled tree, borrowing from the rule and the context.

use serde_json::{Map, Value};

use super::node::{static_target, Cmp, Node, Op, VarTarget};
use super::val::{arith_number, kind_name, less, loose_eq, push_go_string, strict_eq, Val, View};
use super::{fractional, semver, strings, Env, EvalError, MAX_STEPS};

/// Per-evaluation state: what the rule may read and how much work is left.
pub(super) struct Cx<'a> {
    pub(super) env: Env<'a>,
    steps: u64,
}

impl<'a> Cx<'a> {
    pub(super) fn new(env: Env<'a>) -> Cx<'a> {
        Cx { env, steps: 0 }
    }

    /// Charges `n` units of work against the budget.
    #[inline]
    pub(super) fn charge(&mut self, n: u64) -> Result<(), EvalError> {
        self.steps += n;
        if self.steps > MAX_STEPS {
            Err(EvalError(format!(
                "rule exceeded the evaluation budget of {MAX_STEPS} steps"
            )))
        } else {
            Ok(())
        }
    }

    /// Charges for copying `v` (about one unit per element and per 64 bytes of text), so
    /// rules cannot multiply large context values without limit.
    pub(super) fn charge_copy(&mut self, v: &Value) -> Result<(), EvalError> {
        if let Value::String(s) = v {
            return self.charge(1 + s.len() as u64 / 64);
        }
        let mut cost: u64 = 1;
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => cost += s.len() as u64 / 64,
                Value::Array(items) => {
                    cost += items.len() as u64;
                    stack.extend(items.iter());
                }
                Value::Object(map) => {
                    cost += map.len() as u64;
                    stack.extend(map.values());
                }
                _ => {}
            }
        }
        self.charge(cost)
    }

    /// Takes ownership of a value, charging when that means copying borrowed data.
    pub(super) fn owned(&mut self, v: Val<'_>) -> Result<Value, EvalError> {
        if let Val::Ref(r @ (Value::String(_) | Value::Array(_) | Value::Object(_))) = v {
            self.charge_copy(r)?;
        }
        v.into_value()
    }

    /// The `$flagd` object flagd adds to the context.
    fn flagd_object(&self) -> Value {
        let mut m = Map::new();
        m.insert("flagKey".into(), Value::from(self.env.flag_key));
        m.insert("timestamp".into(), Value::from(self.env.timestamp));
        Value::Object(m)
    }
}

/// What `var` reads: the request context, or the current item inside `map`/`filter`/… .
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope<'x> {
    /// The request context (plus `$flagd`).
    Root,
    /// The current element of `map`, `filter`, `all`, `none`, `some`.
    Item(&'x Value),
    /// Inside `reduce`: `{"current": …, "accumulator": …}`.
    Reduce { current: &'x Value, acc: &'x Value },
}

type R<'x> = Result<Val<'x>, EvalError>;

impl Node {
    /// Evaluates this node.
    pub(super) fn eval<'x, 'a: 'x>(&'x self, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
        cx.charge(1)?;
        match self {
            Node::Lit(v) => Ok(Val::Ref(v)),
            Node::Arr(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    let v = item.eval(scope, cx)?;
                    out.push(cx.owned(v)?);
                }
                Ok(Val::Own(Value::Array(out)))
            }
            Node::Var(var) => {
                if let VarTarget::Empty = var.target {
                    // Go returns nil for a path of only dots, without looking at the default.
                    return Ok(Val::Null);
                }
                let found = lookup_target(&var.target, scope, cx)?;
                match (found, &var.default) {
                    (Some(v), _) if !v.is_null() => Ok(v),
                    (_, Some(default)) => default.eval(scope, cx),
                    (found, None) => Ok(found.unwrap_or(Val::Null)),
                }
            }
            Node::VarDyn(args) => var_dynamic(args, scope, cx),
            Node::Op(op, args) => eval_op(*op, args, scope, cx),
        }
    }
}

/// Evaluates argument `i`, or `None` when it was not given.
#[inline]
pub(super) fn arg<'x, 'a: 'x>(
    args: &'x [Node],
    i: usize,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    match args.get(i) {
        Some(node) => node.eval(scope, cx).map(Some),
        None => Ok(None),
    }
}

/// Resolves a `var` target; `None` or `Some(Null)` means absent.
fn lookup_target<'x, 'a: 'x>(
    target: &VarTarget,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    Ok(match target {
        VarTarget::Whole => Some(whole_data(scope, cx)?),
        VarTarget::NullPath => match scope {
            Scope::Item(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => {
                Some(Val::Ref(v))
            }
            _ => None,
        },
        VarTarget::Empty => None,
        VarTarget::FlagdObject => Some(Val::Own(cx.flagd_object())),
        VarTarget::FlagdKey => Some(Val::Str(cx.env.flag_key)),
        VarTarget::FlagdTimestamp => Some(Val::Num(cx.env.timestamp as f64)),
        VarTarget::FlagdMissing => None,
        VarTarget::Path(segs) => {
            let mut it = segs.iter().map(|s| (&*s.key, s.index));
            lookup_path(scope, cx, &mut it).map(Val::Ref)
        }
    })
}

/// The whole data object of the current scope.
fn whole_data<'x, 'a: 'x>(scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    Ok(match scope {
        Scope::Item(v) => Val::Ref(v),
        Scope::Root => {
            // Rare: materialise the context as the Go engine sees it (with `$flagd`).
            for v in cx.env.context.values() {
                cx.charge_copy(v)?;
            }
            let mut m = cx.env.context.clone();
            m.insert("$flagd".into(), cx.flagd_object());
            Val::Own(Value::Object(m))
        }
        Scope::Reduce { current, acc } => {
            cx.charge_copy(current)?;
            cx.charge_copy(acc)?;
            let mut m = Map::new();
            m.insert("current".into(), current.clone());
            m.insert("accumulator".into(), acc.clone());
            Val::Own(Value::Object(m))
        }
    })
}

/// Walks a path from the scope's data.
fn lookup_path<'x, 'k>(
    scope: Scope<'x>,
    cx: &Cx<'x>,
    segs: &mut dyn Iterator<Item = (&'k str, Option<usize>)>,
) -> Option<&'x Value> {
    let (first_key, first_index) = segs.next()?;
    let mut cur: &'x Value = match scope {
        Scope::Root => cx.env.context.get(first_key)?,
        Scope::Item(v) => step(v, first_key, first_index)?,
        Scope::Reduce { current, acc } => match first_key {
            "current" => current,
            "accumulator" => acc,
            _ => return None,
        },
    };
    for (key, index) in segs {
        cur = step(cur, key, index)?;
    }
    Some(cur)
}

#[inline]
fn step<'x>(v: &'x Value, key: &str, index: Option<usize>) -> Option<&'x Value> {
    match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => a.get(index?),
        _ => None,
    }
}

/// Parses an index the way static paths do.
fn index_of(key: &str) -> Option<usize> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        key.parse().ok()
    } else {
        None
    }
}

/// Looks a dotted path up at run time (computed `var`, `missing`, `missing_some`).
fn lookup_str<'x, 'a: 'x>(
    path: &str,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    if path.split('.').find(|s| !s.is_empty()) == Some("$flagd") || path.is_empty() {
        return lookup_target(&static_target(path), scope, cx);
    }
    if path.split('.').all(str::is_empty) {
        return Ok(Some(Val::Null));
    }
    let mut it = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| (s, index_of(s)));
    Ok(lookup_path(scope, cx, &mut it).map(Val::Ref))
}

/// `var` with a computed path: `[path]` or `[path, default]`.
fn var_dynamic<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let path = args[0].eval(scope, cx)?;
    let found = match path.view() {
        View::Str(s) => lookup_str(s, scope, cx)?,
        View::Num(n) => {
            let mut s = String::new();
            super::val::push_number(&mut s, n);
            lookup_str(&s, scope, cx)?
        }
        View::Null => lookup_target(&VarTarget::NullPath, scope, cx)?,
        other => {
            return Err(EvalError(format!(
                "var path cannot be {}",
                kind_name(Some(other))
            )))
        }
    };
    match found {
        Some(v) if !v.is_null() => Ok(v),
        _ => match args.get(1) {
            Some(default) => default.eval(scope, cx),
            None => Ok(Val::Null),
        },
    }
}

fn eval_op<'x, 'a: 'x>(op: Op, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    match op {
        Op::If => {
            let mut i = 0;
            while i + 1 < args.len() {
                if args[i].eval(scope, cx)?.truthy() {
                    return args[i + 1].eval(scope, cx);
                }
                i += 2;
            }
            match args.len() % 2 {
                1 => args[args.len() - 1].eval(scope, cx),
                _ => Ok(Val::Null),
            }
        }
        Op::Ternary => {
            let cond = match arg(args, 0, scope, cx)? {
                Some(c) => c.truthy(),
                None => return Ok(Val::Null),
            };
            let pick = if cond { 1 } else { 2 };
            Ok(arg(args, pick, scope, cx)?.unwrap_or(Val::Null))
        }
        Op::And | Op::Or => {
            let want = op == Op::Or;
            let mut last = Val::Null;
            for node in args.iter() {
                let v = node.eval(scope, cx)?;
                if v.truthy() == want {
                    return Ok(v);
                }
                last = v;
            }
            Ok(last)
        }
        Op::Not => Ok(Val::Bool(
            !arg(args, 0, scope, cx)?.is_some_and(|v| v.truthy()),
        )),
        Op::Truthy => Ok(Val::Bool(
            arg(args, 0, scope, cx)?.is_some_and(|v| v.truthy()),
        )),
        Op::Cmp(c) => compare(c, args, scope, cx),
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Abs => arith(op, args, scope, cx),
        Op::Max | Op::Min => {
            if args.is_empty() {
                return Ok(Val::Null);
            }
            let mut best = f64::NAN;
            for (i, node) in args.iter().enumerate() {
                let v = node.eval(scope, cx)?;
                let n = arith_number(Some(v.view()))?;
                let better = if op == Op::Max { n > best } else { n < best };
                if i == 0 || better {
                    best = n;
                }
            }
            Ok(Val::Num(best))
        }
        Op::In => op_in(args, scope, cx),
        Op::Cat => cat(args, scope, cx),
        Op::Substr => substr(args, scope, cx),
        Op::Merge => {
            let mut out = Vec::new();
            for node in args.iter() {
                match node.eval(scope, cx)? {
                    Val::Own(Value::Array(items)) => {
                        cx.charge(items.len() as u64)?;
                        out.extend(items);
                    }
                    Val::Ref(Value::Array(items)) => {
                        for item in items {
                            cx.charge_copy(item)?;
                        }
                        out.extend(items.iter().cloned());
                    }
                    v => out.push(cx.owned(v)?),
                }
            }
            Ok(Val::Own(Value::Array(out)))
        }
        Op::Missing => missing(args, scope, cx),
        Op::MissingSome => missing_some(args, scope, cx),
        Op::Map | Op::Filter | Op::All | Op::None | Op::Some => iterate(op, args, scope, cx),
        Op::Reduce => reduce(args, scope, cx),
        Op::Fractional => fractional::eval(args, scope, cx),
        Op::SemVer => semver::eval(args, scope, cx),
        Op::StartsWith => strings::starts_with(args, scope, cx),
        Op::EndsWith => strings::ends_with(args, scope, cx),
    }
}

/// Comparisons, including the Go engine's three-argument "between" form and its
/// one-argument form (plain truthiness).
fn compare<'x, 'a: 'x>(c: Cmp, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let a = arg(args, 0, scope, cx)?;
    if args.len() == 1 {
        return Ok(Val::Bool(a.is_some_and(|v| v.truthy())));
    }
    let b = arg(args, 1, scope, cx)?;
    let (av, bv) = (a.as_ref().map(Val::view), b.as_ref().map(Val::view));
    let le = |x, y| less(x, y) || loose_eq(x, y);
    if args.len() == 3 {
        let c3 = arg(args, 2, scope, cx)?;
        let cv = c3.as_ref().map(Val::view);
        // Go dispatches every comparison with three arguments to `between`, which only knows
        // `<`, `<=` and `>=`; anything else (`>`, `==`, …) is the descending strict chain.
        let r = match c {
            Cmp::Lt => less(av, bv) && less(bv, cv),
            Cmp::Le => le(av, bv) && le(bv, cv),
            Cmp::Ge => le(cv, bv) && le(bv, av),
            _ => less(cv, bv) && less(bv, av),
        };
        return Ok(Val::Bool(r));
    }
    let r = match c {
        Cmp::Eq => loose_eq(av, bv),
        Cmp::Ne => !loose_eq(av, bv),
        Cmp::StrictEq => strict_eq(av, bv),
        Cmp::StrictNe => !strict_eq(av, bv),
        Cmp::Lt => less(av, bv),
        Cmp::Gt => less(bv, av),
        Cmp::Le => le(av, bv),
        Cmp::Ge => less(bv, av) || loose_eq(av, bv),
    };
    Ok(Val::Bool(r))
}

fn arith<'x, 'a: 'x>(op: Op, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let num = |v: Option<Val<'_>>| arith_number(v.as_ref().map(Val::view));
    match (op, args.len()) {
        (Op::Mod, 0) => Err(EvalError("% needs two arguments".into())),
        (Op::Mod, 1) => Ok(Val::Bool(
            arg(args, 0, scope, cx)?.is_some_and(|v| v.truthy()),
        )),
        (Op::Mod, _) => {
            let a = num(arg(args, 0, scope, cx)?)?;
            let b = num(arg(args, 1, scope, cx)?)?;
            // Go math.Mod: result has the sign of the dividend, like Rust's `%` on f64.
            Ok(Val::Num(a % b))
        }
        (Op::Abs, 1) => Ok(Val::Num(num(arg(args, 0, scope, cx)?)?.abs())),
        (Op::Abs, _) => Err(EvalError("abs takes one argument".into())),
        (Op::Sub, 1) => Ok(Val::Num(-num(arg(args, 0, scope, cx)?)?)),
        (Op::Sub | Op::Div, 0) => Ok(Val::Num(0.0)),
        (Op::Add, _) | (Op::Mul, _) => {
            let mut acc = if op == Op::Add { 0.0 } else { 1.0 };
            for node in args.iter() {
                let n = num(Some(node.eval(scope, cx)?))?;
                if op == Op::Add {
                    acc += n;
                } else {
                    acc *= n;
                }
            }
            Ok(Val::Num(acc))
        }
        (_, _) => {
            let mut acc = num(arg(args, 0, scope, cx)?)?;
            for node in args[1..].iter() {
                let n = num(Some(node.eval(scope, cx)?))?;
                if op == Op::Sub {
                    acc -= n;
                } else {
                    acc /= n;
                }
            }
            Ok(Val::Num(acc))
        }
    }
}

/// `in`: substring test for a string haystack, membership for an array haystack.
fn op_in<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let needle = match arg(args, 0, scope, cx)? {
        Some(n) => n,
        None => return Err(EvalError("in needs arguments".into())),
    };
    let needle = needle.view();
    if matches!(needle, View::Null) || args.len() < 2 {
        return Ok(Val::Bool(false));
    }
    // A haystack array written with expressions in it: compare element by element without
    // building the array.
    if let Node::Arr(items) = &args[1] {
        for item in items.iter() {
            let e = item.eval(scope, cx)?;
            if member_eq(needle, e.view())? {
                return Ok(Val::Bool(true));
            }
        }
        return Ok(Val::Bool(false));
    }
    let hay = args[1].eval(scope, cx)?;
    let found = match hay.view() {
        View::Str(h) => match needle {
            View::Str(n) => h.contains(n),
            other => {
                return Err(EvalError(format!(
                    "in: cannot look for {} in a string",
                    kind_name(Some(other))
                )))
            }
        },
        View::Arr(items) => {
            cx.charge(items.len() as u64 / 16)?;
            let mut found = false;
            for item in items {
                if member_eq(needle, View::of(item))? {
                    found = true;
                    break;
                }
            }
            found
        }
        _ => false,
    };
    Ok(Val::Bool(found))
}

/// One membership comparison of the Go engine's `in`.
fn member_eq(needle: View<'_>, element: View<'_>) -> Result<bool, EvalError> {
    match (element, needle) {
        // Go extension: a nested two-element array is an inclusive numeric range.
        (View::Arr(range), _) => {
            if range.len() < 2 {
                return Err(EvalError("in: range needs two bounds".into()));
            }
            let x = arith_number(Some(needle))?;
            let lo = arith_number(Some(View::of(&range[0])))?;
            let hi = arith_number(Some(View::of(&range[1])))?;
            Ok(x >= lo && hi >= x)
        }
        (e, View::Num(n)) => Ok(arith_number(Some(e))? == n),
        (View::Str(a), View::Str(b)) => Ok(a == b),
        (View::Bool(a), View::Bool(b)) => Ok(a == b),
        (View::Obj(_), View::Obj(_)) => Err(EvalError("in: cannot compare objects".into())),
        _ => Ok(false),
    }
}

fn cat<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    if let [only] = args {
        let v = only.eval(scope, cx)?;
        if let View::Str(s) = v.view() {
            if s.trim() == s {
                return Ok(v);
            }
        }
        let mut out = String::new();
        push_go_string(&mut out, v.view())?;
        return Ok(Val::Own(Value::String(trim_owned(out))));
    }
    let mut out = String::new();
    for node in args.iter() {
        let v = node.eval(scope, cx)?;
        push_go_string(&mut out, v.view())?;
    }
    cx.charge(out.len() as u64 / 64)?;
    // Go's `cat` trims surrounding whitespace from the result (strings.TrimSpace).
    Ok(Val::Own(Value::String(trim_owned(out))))
}

fn trim_owned(s: String) -> String {
    let t = s.trim();
    if t.len() == s.len() {
        s
    } else {
        t.to_owned()
    }
}

fn substr<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let v = arg(args, 0, scope, cx)?;
    let mut text = String::new();
    push_go_string(&mut text, v.as_ref().map_or(View::Null, Val::view))?;
    let from = arith_number(arg(args, 1, scope, cx)?.as_ref().map(Val::view))?;
    let chars = text.chars().count() as i64;
    let mut from = from as i64;
    if from < 0 {
        from += chars;
    }
    if from < 0 || from > chars {
        return Ok(Val::Own(Value::String(text)));
    }
    let len = if args.len() == 3 {
        arith_number(arg(args, 2, scope, cx)?.as_ref().map(Val::view))? as i64
    } else {
        chars
    };
    let to = if len < 0 {
        chars + len
    } else {
        from.saturating_add(len)
    }
    .min(chars);
    if to < from {
        // Go slices runes[from:to] and panics; flagd reports that as PARSE_ERROR.
        return Err(EvalError("substr: end before start".into()));
    }
    cx.charge(text.len() as u64 / 64)?;
    let out: String = text
        .chars()
        .skip(from as usize)
        .take((to - from) as usize)
        .collect();
    Ok(Val::Own(Value::String(out)))
}

fn missing<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let mut names = Vec::new();
    for node in args.iter() {
        names.push(node.eval(scope, cx)?);
    }
    // As in json-logic-js, a single array argument (e.g. from `merge`) is the list of names.
    let list: Vec<View<'_>> = match names.as_slice() {
        [only] => match only.view() {
            View::Arr(items) => items.iter().map(View::of).collect(),
            v => vec![v],
        },
        many => many.iter().map(Val::view).collect(),
    };
    let mut out = Vec::new();
    for name in list {
        cx.charge(1)?;
        if !is_present(name, scope, cx)? {
            out.push(view_to_value(name));
        }
    }
    Ok(Val::Own(Value::Array(out)))
}

fn view_to_value(v: View<'_>) -> Value {
    match v {
        View::Null => Value::Null,
        View::Bool(b) => Value::Bool(b),
        View::Num(n) => super::val::num_value(n).unwrap_or(Value::Null),
        View::Str(s) => Value::String(s.to_owned()),
        View::Arr(a) => Value::Array(a.to_vec()),
        View::Obj(o) => Value::Object(o.clone()),
    }
}

/// Whether the context has a non-null value at a path named by a string or number.
fn is_present<'x, 'a: 'x>(
    name: View<'_>,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<bool, EvalError> {
    let path = match name {
        View::Str(s) => s.to_owned(),
        View::Num(n) => {
            let mut s = String::new();
            super::val::push_number(&mut s, n);
            s
        }
        _ => return Ok(false),
    };
    Ok(lookup_str(&path, scope, cx)?.is_some_and(|v| !v.is_null()))
}

fn missing_some<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let need = arith_number(arg(args, 0, scope, cx)?.as_ref().map(Val::view))? as i64;
    let names = match arg(args, 1, scope, cx)? {
        Some(n) => n,
        None => return Err(EvalError("missing_some needs a list of names".into())),
    };
    let View::Arr(items) = names.view() else {
        return Err(EvalError("missing_some: names must be an array".into()));
    };
    let mut out = Vec::new();
    let mut found = 0i64;
    for item in items {
        cx.charge(1)?;
        if is_present(View::of(item), scope, cx)? {
            found += 1;
        } else {
            out.push(item.clone());
        }
    }
    if need > found {
        Ok(Val::Own(Value::Array(out)))
    } else {
        Ok(Val::Own(Value::Array(Vec::new())))
    }
}

/// The array an iterating operator walks; `None` when the Go engine sees no subject.
fn subject<'x, 'a: 'x>(
    args: &'x [Node],
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    match args.first() {
        None => Ok(None),
        // A scalar written in the rule is not a subject for the Go engine.
        Some(Node::Lit(v)) if !v.is_array() => Ok(None),
        Some(node) => {
            let v = node.eval(scope, cx)?;
            Ok(if v.is_null() { None } else { Some(v) })
        }
    }
}

fn iterate<'x, 'a: 'x>(op: Op, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let empty = match op {
        Op::Map | Op::Filter => Val::Own(Value::Array(Vec::new())),
        Op::None => Val::Bool(true),
        _ => Val::Bool(false),
    };
    if matches!(op, Op::Map | Op::Filter) && args.len() < 2 {
        return Ok(empty);
    }
    let Some(subject) = subject(args, scope, cx)? else {
        return Ok(empty);
    };
    if matches!(op, Op::All | Op::None | Op::Some) && !subject.truthy() {
        return Ok(empty);
    }
    let View::Arr(items) = subject.view() else {
        return Err(EvalError(format!(
            "cannot iterate over {}",
            kind_name(Some(subject.view()))
        )));
    };
    let Some(body) = args.get(1) else {
        return Err(EvalError(
            "missing the logic to apply to each element".into(),
        ));
    };
    match op {
        Op::Map => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let v = body.eval(Scope::Item(item), cx)?;
                out.push(cx.owned(v)?);
            }
            Ok(Val::Own(Value::Array(out)))
        }
        Op::Filter => {
            let mut out = Vec::new();
            for item in items {
                if body.eval(Scope::Item(item), cx)?.truthy() {
                    cx.charge_copy(item)?;
                    out.push(item.clone());
                }
            }
            Ok(Val::Own(Value::Array(out)))
        }
        _ => {
            // all: stop at the first falsy; none/some: stop at the first truthy.
            let stop_on = op != Op::All;
            for item in items {
                if body.eval(Scope::Item(item), cx)?.truthy() == stop_on {
                    return Ok(Val::Bool(op == Op::Some));
                }
            }
            Ok(Val::Bool(op != Op::Some))
        }
    }
}

/// The type the Go engine fixes for `reduce`'s accumulator from the initial value.
#[derive(Clone, Copy)]
enum AccType {
    Bool,
    Num,
    Str,
}

fn reduce<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    if args.len() < 3 {
        return Ok(Val::Num(0.0));
    }
    let initial = args[2].eval(scope, cx)?;
    let (ty, mut acc) = match initial.view() {
        View::Bool(b) => (AccType::Bool, Value::Bool(b)),
        View::Num(n) => (AccType::Num, super::val::num_value(n)?),
        View::Str(s) => (AccType::Str, Value::String(s.to_owned())),
        other => {
            return Err(EvalError(format!(
                "reduce: initial value cannot be {}",
                kind_name(Some(other))
            )))
        }
    };
    let Some(subject) = subject(args, scope, cx)? else {
        return Ok(Val::Num(0.0));
    };
    let View::Arr(items) = subject.view() else {
        return Err(EvalError("reduce: not an array".into()));
    };
    for item in items {
        if item.is_null() {
            continue;
        }
        let next = {
            let r = args[1].eval(
                Scope::Reduce {
                    current: item,
                    acc: &acc,
                },
                cx,
            )?;
            match ty {
                AccType::Bool => Value::Bool(r.truthy()),
                AccType::Num => super::val::num_value(arith_number(Some(r.view()))?)?,
                AccType::Str => {
                    let mut s = String::new();
                    push_go_string(&mut s, r.view())?;
                    Value::String(s)
                }
            }
        };
        acc = next;
    }
    Ok(Val::Own(acc))
}
